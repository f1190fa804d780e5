"""IDENTIFY: decoding its JSON as nsqd's struct decoding does, nsqd's bounds on what a client may
negotiate, and the feature-negotiation reply."""
from __future__ import annotations

import json

from nsqtx.errors import FatalClientError
from nsqtx.version import NSQD_VERSION

# IDENTIFY fields and the JSON type nsqd's struct decoding demands of each.
IDENTIFY_FIELDS = {
    "client_id": str, "hostname": str, "user_agent": str,
    "heartbeat_interval": int, "output_buffer_size": int, "output_buffer_timeout": int,
    "msg_timeout": int, "sample_rate": int, "deflate_level": int,
    "feature_negotiation": bool, "tls_v1": bool, "deflate": bool, "snappy": bool,
    "topology_region": str, "topology_zone": str,
}


def decode_identify(body: bytes) -> dict:
    def no_constants(name):
        raise ValueError(name)
    try:
        data = json.loads(body.decode("utf-8", "replace"), parse_constant=no_constants)
    except (ValueError, RecursionError):
        data = False
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise FatalClientError("E_BAD_BODY", "IDENTIFY failed to decode JSON body")
    out = {}
    for key, kind in IDENTIFY_FIELDS.items():
        value = data.get(key)
        if value is None:
            continue
        if kind is int:
            bits = 31 if key == "sample_rate" else 63
            ok = isinstance(value, int) and not isinstance(value, bool) and -(1 << bits) <= value < (1 << bits)
        else:
            ok = isinstance(value, kind)
        if not ok:
            raise FatalClientError("E_BAD_BODY", "IDENTIFY failed to decode JSON body")
        out[key] = value
    return out


def negotiate(data: dict, current, options):
    """The client's new (heartbeat_interval, output_buffer_size, output_buffer_timeout, msg_timeout)
    in seconds and bytes, from `current` ones and nsqd's bounds: 0 keeps the current value, -1
    disables where nsqd allows it; ValueError names the first value out of bounds."""
    heartbeat_interval, output_buffer_size, output_buffer_timeout, msg_timeout = current

    heartbeat = data.get("heartbeat_interval", 0)
    if heartbeat == -1:
        heartbeat_interval = 0.0
    elif heartbeat != 0:
        if not 1000 <= heartbeat <= options.max_heartbeat_interval * 1000:
            raise ValueError("heartbeat interval (%d) is invalid" % heartbeat)
        heartbeat_interval = heartbeat / 1000.0

    timeout = data.get("output_buffer_timeout", 0)
    if timeout == -1:
        output_buffer_timeout = 0.0
    elif timeout != 0:
        if not options.min_output_buffer_timeout * 1000 <= timeout <= options.max_output_buffer_timeout * 1000:
            raise ValueError("output buffer timeout (%d) is invalid" % timeout)
        output_buffer_timeout = timeout / 1000.0

    size = data.get("output_buffer_size", 0)
    if size == -1:
        output_buffer_size = 1
        output_buffer_timeout = 0.0
    elif size != 0:
        if not 64 <= size <= options.max_output_buffer_size:
            raise ValueError("output buffer size (%d) is invalid" % size)
        output_buffer_size = size

    sample_rate = data.get("sample_rate", 0)
    if not 0 <= sample_rate <= 99:
        raise ValueError("sample rate (%d) is invalid" % sample_rate)

    requested = data.get("msg_timeout", 0)
    if requested != 0:
        if not 1000 <= requested <= options.max_msg_timeout * 1000:
            raise ValueError("msg timeout (%d) is invalid" % requested)
        msg_timeout = requested / 1000.0

    return heartbeat_interval, output_buffer_size, output_buffer_timeout, msg_timeout


class Features:
    """What a feature-negotiating IDENTIFY turns on: nsqd grants what the client asks for and the
    server offers (TLS only with a certificate), deflate at the level asked for (6 if none) up to
    --max-deflate-level, and refuses snappy and deflate together."""

    def __init__(self, data: dict, options, tls_offered: bool):
        self.tls = tls_offered and data.get("tls_v1", False)
        self.deflate = options.deflate and data.get("deflate", False)
        level = data.get("deflate_level", 0) if self.deflate else 0
        self.deflate_level = min(level if level > 0 else 6, options.max_deflate_level)
        self.snappy = options.snappy and data.get("snappy", False)
        if self.deflate and self.snappy:
            raise FatalClientError("E_IDENTIFY_FAILED", "cannot enable both deflate and snappy compression")


def feature_reply(options, features: Features, msg_timeout: float, output_buffer_size: int,
                  output_buffer_timeout: float, sample_rate: int, auth_required: bool) -> bytes:
    """The JSON nsqd answers a feature-negotiating IDENTIFY with."""
    return json.dumps({
        "max_rdy_count": options.max_rdy_count,
        "version": NSQD_VERSION,
        "max_msg_timeout": int(options.max_msg_timeout * 1000),
        "msg_timeout": int(msg_timeout * 1000),
        "tls_v1": features.tls,
        "deflate": features.deflate,
        "deflate_level": features.deflate_level,
        "max_deflate_level": options.max_deflate_level,
        "snappy": features.snappy,
        "sample_rate": sample_rate,
        "auth_required": auth_required,
        "output_buffer_size": output_buffer_size,
        "output_buffer_timeout": int(output_buffer_timeout * 1000),
        "topology_region": "",
        "topology_zone": "",
    }, separators=(",", ":")).encode()
