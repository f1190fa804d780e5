"""nsqd.dat: which topics and channels exist and which are paused, in Go nsqd's JSON layout, so a
restart (of nsqtx or of Go nsqd on the same --data-path) brings them back."""
from __future__ import annotations

import json
import os

from nsqtx.files import replace_file
from nsqtx.version import NSQD_VERSION

FILE_NAME = "nsqd.dat"


class MetadataError(Exception):
    pass


def metadata_path(data_path: str) -> str:
    return os.path.join(data_path, FILE_NAME)


def snapshot(topics) -> dict:
    """What nsqd persists: durable topics and channels only, with their pause state."""
    out = []
    for topic in topics:
        if topic.ephemeral:
            continue
        out.append({
            "name": topic.name,
            "paused": topic.paused,
            "channels": [{"name": c.name, "paused": c.paused} for c in topic.channels.values() if not c.ephemeral],
        })
    return {"topics": out, "version": NSQD_VERSION}


def write(data_path: str, metadata: dict) -> None:
    """Replace the file atomically: a reader sees the old or the new content, never a mix."""
    replace_file(metadata_path(data_path), json.dumps(metadata, separators=(",", ":")).encode())


def read(data_path: str):
    """The saved metadata as [(topic, paused, [(channel, paused)])], or [] on a fresh data path."""
    path = metadata_path(data_path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return []
    except OSError as err:
        raise MetadataError("failed to read metadata from %s - %s" % (path, err))
    try:
        parsed = json.loads(data)
        topics = []
        for topic in parsed.get("topics") or []:
            channels = [(c["name"], bool(c.get("paused"))) for c in topic.get("channels") or []]
            topics.append((topic["name"], bool(topic.get("paused")), channels))
    except (ValueError, TypeError, KeyError, AttributeError) as err:
        raise MetadataError("failed to parse metadata in %s - %s" % (path, err))
    return topics
