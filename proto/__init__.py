"""Wire formats: protobuf signaling and the binary media frame."""
