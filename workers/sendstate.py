"""Reads of aioquic's private send state, which it has no public view of (aioquic 1.7.2, pinned).

Every read of `QuicConnection` internals that decides whether a transmit can be skipped lives here, and the one
write (bringing a delayed ACK forward), so an aioquic upgrade has one place to re-check against
`QuicConnection._write_application` and `_payload_received`.
"""

# ruff: noqa: SLF001 (reading aioquic's private state is what this module is for)

from __future__ import annotations

from aioquic import tls
from aioquic.quic.connection import Limit, QuicConnection, QuicConnectionState
from aioquic.quic.stream import QuicStream


def nothing_to_send(quic: QuicConnection, now: float) -> bool:
    """Whether `datagrams_to_send(now)` would surely return nothing (so a transmit would only re-arm the timer).

    Most datagrams a server receives are a subscriber's ACK-only packets or a publisher's media, after which
    aioquic's transmit usually builds an empty packet for nothing (its fixed cost is about half a full
    packet's). That is skipped when no ACK is due yet (a later one is the timer's business) and the
    connection holds nothing to send: no datagram or stream data (lost data returns to its stream's
    buffer, data blocked by the congestion window stays there), no flow-control credit to raise, no stream
    or connection control frame a loss put back (every frame aioquic retransmits sets one of the flags read
    here), no handshake, path or close work. Mirrors `QuicConnection._write_application` of aioquic 1.7.2.
    """
    if quic._state is not QuicConnectionState.CONNECTED or len(quic._network_paths) != 1:
        return False
    path = quic._network_paths[0]
    max_data, max_bidi, max_uni = (
        quic._local_max_data,
        quic._local_max_streams_bidi,
        quic._local_max_streams_uni,
    )
    ack_at = quic._spaces[tls.Epoch.ONE_RTT].ack_at
    return (
        quic._handshake_confirmed
        and path.is_validated
        and not (
            quic._close_pending
            or (ack_at is not None and ack_at <= now)
            or quic._datagrams_pending
            or quic._pacing_at is not None
            or quic._probe_pending
            or quic._ping_pending
            or quic._handshake_done_pending
            or quic._retire_connection_ids
            or quic._streams_blocked_pending
            or path.remote_challenges
        )
        and max_data.sent == max_data.value
        and max_data.used * 2 <= max_data.value
        and _stream_limit_idle(max_bidi)
        and _stream_limit_idle(max_uni)
        and all(connection_id.was_sent for connection_id in quic._host_cids)
        and quic._crypto_streams[tls.Epoch.ONE_RTT].sender.buffer_is_empty
        and _streams_idle(quic._streams_queue)
    )


def acknowledge_now(quic: QuicConnection, now: float) -> bool:
    """Makes an ACK that aioquic would delay (by 1 ms) due now; True when one is pending.

    The adapter sends it with the transmit at the end of the event-loop iteration instead of from a timer
    of its own: a publisher, whom the server sends nothing else, otherwise costs a timer wake-up per burst.
    """
    space = quic._spaces[tls.Epoch.ONE_RTT]
    if space.ack_at is None:
        return False
    space.ack_at = min(space.ack_at, now)
    return True


def _stream_limit_idle(limit: Limit) -> bool:
    """No MAX_STREAMS to send: the limit was announced, or raising it waits for the batch. aioquic holds the
    update back while the peer has at least as many streams left to open as the update would grant (each
    stream the peer ends raises the limit by one); mirroring only `sent == value` took every packet of a
    publisher whose media streams had ended for one that needed a transmit."""
    return limit.value == limit.sent or limit.sent - limit.used >= limit.value - limit.sent


def _streams_idle(streams: list[QuicStream]) -> bool:
    """No stream has data, a FIN, a reset, a STOP_SENDING or a MAX_STREAM_DATA to send, or waits to be
    discarded."""
    for stream in streams:
        sender = stream.sender
        receiver = stream.receiver
        window = stream.max_stream_data_local
        if (
            not sender.buffer_is_empty
            or sender.reset_pending
            or receiver.stop_pending
            or stream.max_stream_data_local_sent != window
            or (window and receiver.highest_offset * 2 > window)
            or (sender.is_finished and receiver.is_finished)
        ):
            return False
    return True
