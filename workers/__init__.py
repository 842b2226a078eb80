"""QUIC/WebTransport media workers: sans-I/O meeting and session state machines and their aioquic adapter."""
