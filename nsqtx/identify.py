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


def feature_reply(options, msg_timeout: float, output_buffer_size: int, output_buffer_timeout: float) -> bytes:
    """The JSON nsqd answers a feature-negotiating IDENTIFY with.

    TLS, snappy, deflate and sampling are not implemented yet: they are reported off, never faked, so
    a client that asked for them carries on as with an nsqd that has them disabled."""
    return json.dumps({
        "max_rdy_count": options.max_rdy_count,
        "version": NSQD_VERSION,
        "max_msg_timeout": int(options.max_msg_timeout * 1000),
        "msg_timeout": int(msg_timeout * 1000),
        "tls_v1": False,
        "deflate": False,
        "deflate_level": min(6, options.max_deflate_level),
        "max_deflate_level": options.max_deflate_level,
        "snappy": False,
        "sample_rate": 0,
        "auth_required": False,
        "output_buffer_size": output_buffer_size,
        "output_buffer_timeout": int(output_buffer_timeout * 1000),
        "topology_region": "",
        "topology_zone": "",
    }, separators=(",", ":")).encode()
