from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TrackKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRACK_KIND_UNSPECIFIED: _ClassVar[TrackKind]
    TRACK_KIND_AUDIO: _ClassVar[TrackKind]
    TRACK_KIND_VIDEO: _ClassVar[TrackKind]

class Role(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROLE_UNSPECIFIED: _ClassVar[Role]
    ROLE_HOST: _ClassVar[Role]
    ROLE_PARTICIPANT: _ClassVar[Role]
    ROLE_VIEWER: _ClassVar[Role]

class ErrorCode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ERROR_CODE_UNSPECIFIED: _ClassVar[ErrorCode]
    ERROR_CODE_MALFORMED: _ClassVar[ErrorCode]
    ERROR_CODE_UNAUTHENTICATED: _ClassVar[ErrorCode]
    ERROR_CODE_TOKEN_EXPIRED: _ClassVar[ErrorCode]
    ERROR_CODE_TOKEN_INVALID: _ClassVar[ErrorCode]
    ERROR_CODE_WRONG_MEETING: _ClassVar[ErrorCode]
    ERROR_CODE_FORBIDDEN: _ClassVar[ErrorCode]
    ERROR_CODE_UNKNOWN_TRACK: _ClassVar[ErrorCode]
    ERROR_CODE_MEETING_FULL: _ClassVar[ErrorCode]
    ERROR_CODE_BAD_FRAME: _ClassVar[ErrorCode]
    ERROR_CODE_ALREADY_JOINED: _ClassVar[ErrorCode]
    ERROR_CODE_REPLACED: _ClassVar[ErrorCode]
    ERROR_CODE_INTERNAL: _ClassVar[ErrorCode]
    ERROR_CODE_UNKNOWN_PARTICIPANT: _ClassVar[ErrorCode]
    ERROR_CODE_E2EE_REQUIRED: _ClassVar[ErrorCode]
    ERROR_CODE_PERMISSION_DENIED: _ClassVar[ErrorCode]
    ERROR_CODE_REMOVED: _ClassVar[ErrorCode]
    ERROR_CODE_MEETING_LOCKED: _ClassVar[ErrorCode]
    ERROR_CODE_ENDED: _ClassVar[ErrorCode]
    ERROR_CODE_RATE_LIMITED: _ClassVar[ErrorCode]
TRACK_KIND_UNSPECIFIED: TrackKind
TRACK_KIND_AUDIO: TrackKind
TRACK_KIND_VIDEO: TrackKind
ROLE_UNSPECIFIED: Role
ROLE_HOST: Role
ROLE_PARTICIPANT: Role
ROLE_VIEWER: Role
ERROR_CODE_UNSPECIFIED: ErrorCode
ERROR_CODE_MALFORMED: ErrorCode
ERROR_CODE_UNAUTHENTICATED: ErrorCode
ERROR_CODE_TOKEN_EXPIRED: ErrorCode
ERROR_CODE_TOKEN_INVALID: ErrorCode
ERROR_CODE_WRONG_MEETING: ErrorCode
ERROR_CODE_FORBIDDEN: ErrorCode
ERROR_CODE_UNKNOWN_TRACK: ErrorCode
ERROR_CODE_MEETING_FULL: ErrorCode
ERROR_CODE_BAD_FRAME: ErrorCode
ERROR_CODE_ALREADY_JOINED: ErrorCode
ERROR_CODE_REPLACED: ErrorCode
ERROR_CODE_INTERNAL: ErrorCode
ERROR_CODE_UNKNOWN_PARTICIPANT: ErrorCode
ERROR_CODE_E2EE_REQUIRED: ErrorCode
ERROR_CODE_PERMISSION_DENIED: ErrorCode
ERROR_CODE_REMOVED: ErrorCode
ERROR_CODE_MEETING_LOCKED: ErrorCode
ERROR_CODE_ENDED: ErrorCode
ERROR_CODE_RATE_LIMITED: ErrorCode

class ClientMessage(_message.Message):
    __slots__ = ("request_id", "join", "publish", "unpublish", "subscribe", "unsubscribe", "ping", "leave", "request_keyframe", "key_message", "host_action")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    JOIN_FIELD_NUMBER: _ClassVar[int]
    PUBLISH_FIELD_NUMBER: _ClassVar[int]
    UNPUBLISH_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBE_FIELD_NUMBER: _ClassVar[int]
    UNSUBSCRIBE_FIELD_NUMBER: _ClassVar[int]
    PING_FIELD_NUMBER: _ClassVar[int]
    LEAVE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_KEYFRAME_FIELD_NUMBER: _ClassVar[int]
    KEY_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    HOST_ACTION_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    join: Join
    publish: PublishTrack
    unpublish: UnpublishTrack
    subscribe: Subscribe
    unsubscribe: Unsubscribe
    ping: Ping
    leave: Leave
    request_keyframe: RequestKeyframe
    key_message: KeyMessage
    host_action: HostAction
    def __init__(self, request_id: _Optional[int] = ..., join: _Optional[_Union[Join, _Mapping]] = ..., publish: _Optional[_Union[PublishTrack, _Mapping]] = ..., unpublish: _Optional[_Union[UnpublishTrack, _Mapping]] = ..., subscribe: _Optional[_Union[Subscribe, _Mapping]] = ..., unsubscribe: _Optional[_Union[Unsubscribe, _Mapping]] = ..., ping: _Optional[_Union[Ping, _Mapping]] = ..., leave: _Optional[_Union[Leave, _Mapping]] = ..., request_keyframe: _Optional[_Union[RequestKeyframe, _Mapping]] = ..., key_message: _Optional[_Union[KeyMessage, _Mapping]] = ..., host_action: _Optional[_Union[HostAction, _Mapping]] = ...) -> None: ...

class ServerMessage(_message.Message):
    __slots__ = ("request_id", "join_response", "publish_response", "ack", "pong", "error", "participant_joined", "participant_left", "track_published", "track_unpublished", "keyframe_request", "notice", "key_message_received", "muted")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    JOIN_RESPONSE_FIELD_NUMBER: _ClassVar[int]
    PUBLISH_RESPONSE_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    PONG_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANT_JOINED_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANT_LEFT_FIELD_NUMBER: _ClassVar[int]
    TRACK_PUBLISHED_FIELD_NUMBER: _ClassVar[int]
    TRACK_UNPUBLISHED_FIELD_NUMBER: _ClassVar[int]
    KEYFRAME_REQUEST_FIELD_NUMBER: _ClassVar[int]
    NOTICE_FIELD_NUMBER: _ClassVar[int]
    KEY_MESSAGE_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    MUTED_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    join_response: JoinResponse
    publish_response: PublishResponse
    ack: Ack
    pong: Pong
    error: Error
    participant_joined: ParticipantJoined
    participant_left: ParticipantLeft
    track_published: TrackPublished
    track_unpublished: TrackUnpublished
    keyframe_request: KeyframeRequest
    notice: Notice
    key_message_received: KeyMessageReceived
    muted: Muted
    def __init__(self, request_id: _Optional[int] = ..., join_response: _Optional[_Union[JoinResponse, _Mapping]] = ..., publish_response: _Optional[_Union[PublishResponse, _Mapping]] = ..., ack: _Optional[_Union[Ack, _Mapping]] = ..., pong: _Optional[_Union[Pong, _Mapping]] = ..., error: _Optional[_Union[Error, _Mapping]] = ..., participant_joined: _Optional[_Union[ParticipantJoined, _Mapping]] = ..., participant_left: _Optional[_Union[ParticipantLeft, _Mapping]] = ..., track_published: _Optional[_Union[TrackPublished, _Mapping]] = ..., track_unpublished: _Optional[_Union[TrackUnpublished, _Mapping]] = ..., keyframe_request: _Optional[_Union[KeyframeRequest, _Mapping]] = ..., notice: _Optional[_Union[Notice, _Mapping]] = ..., key_message_received: _Optional[_Union[KeyMessageReceived, _Mapping]] = ..., muted: _Optional[_Union[Muted, _Mapping]] = ...) -> None: ...

class Join(_message.Message):
    __slots__ = ("token", "e2ee")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    E2EE_FIELD_NUMBER: _ClassVar[int]
    token: str
    e2ee: bool
    def __init__(self, token: _Optional[str] = ..., e2ee: _Optional[bool] = ...) -> None: ...

class PublishTrack(_message.Message):
    __slots__ = ("kind", "codec", "label")
    KIND_FIELD_NUMBER: _ClassVar[int]
    CODEC_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    kind: TrackKind
    codec: str
    label: str
    def __init__(self, kind: _Optional[_Union[TrackKind, str]] = ..., codec: _Optional[str] = ..., label: _Optional[str] = ...) -> None: ...

class UnpublishTrack(_message.Message):
    __slots__ = ("track_id",)
    TRACK_ID_FIELD_NUMBER: _ClassVar[int]
    track_id: int
    def __init__(self, track_id: _Optional[int] = ...) -> None: ...

class Subscribe(_message.Message):
    __slots__ = ("track_id",)
    TRACK_ID_FIELD_NUMBER: _ClassVar[int]
    track_id: int
    def __init__(self, track_id: _Optional[int] = ...) -> None: ...

class Unsubscribe(_message.Message):
    __slots__ = ("track_id",)
    TRACK_ID_FIELD_NUMBER: _ClassVar[int]
    track_id: int
    def __init__(self, track_id: _Optional[int] = ...) -> None: ...

class RequestKeyframe(_message.Message):
    __slots__ = ("track_id",)
    TRACK_ID_FIELD_NUMBER: _ClassVar[int]
    track_id: int
    def __init__(self, track_id: _Optional[int] = ...) -> None: ...

class Ping(_message.Message):
    __slots__ = ("client_time_us",)
    CLIENT_TIME_US_FIELD_NUMBER: _ClassVar[int]
    client_time_us: int
    def __init__(self, client_time_us: _Optional[int] = ...) -> None: ...

class Leave(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class KeyMessage(_message.Message):
    __slots__ = ("to_participant_ids", "payload")
    TO_PARTICIPANT_IDS_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    to_participant_ids: _containers.RepeatedScalarFieldContainer[str]
    payload: bytes
    def __init__(self, to_participant_ids: _Optional[_Iterable[str]] = ..., payload: _Optional[bytes] = ...) -> None: ...

class HostAction(_message.Message):
    __slots__ = ("kind", "participant_id")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[HostAction.Kind]
        KIND_MUTE: _ClassVar[HostAction.Kind]
        KIND_REMOVE: _ClassVar[HostAction.Kind]
        KIND_LOCK: _ClassVar[HostAction.Kind]
        KIND_UNLOCK: _ClassVar[HostAction.Kind]
        KIND_END: _ClassVar[HostAction.Kind]
    KIND_UNSPECIFIED: HostAction.Kind
    KIND_MUTE: HostAction.Kind
    KIND_REMOVE: HostAction.Kind
    KIND_LOCK: HostAction.Kind
    KIND_UNLOCK: HostAction.Kind
    KIND_END: HostAction.Kind
    KIND_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANT_ID_FIELD_NUMBER: _ClassVar[int]
    kind: HostAction.Kind
    participant_id: str
    def __init__(self, kind: _Optional[_Union[HostAction.Kind, str]] = ..., participant_id: _Optional[str] = ...) -> None: ...

class Participant(_message.Message):
    __slots__ = ("participant_id", "display_name", "can_publish", "can_subscribe", "e2ee", "role")
    PARTICIPANT_ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    CAN_PUBLISH_FIELD_NUMBER: _ClassVar[int]
    CAN_SUBSCRIBE_FIELD_NUMBER: _ClassVar[int]
    E2EE_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    participant_id: str
    display_name: str
    can_publish: bool
    can_subscribe: bool
    e2ee: bool
    role: Role
    def __init__(self, participant_id: _Optional[str] = ..., display_name: _Optional[str] = ..., can_publish: _Optional[bool] = ..., can_subscribe: _Optional[bool] = ..., e2ee: _Optional[bool] = ..., role: _Optional[_Union[Role, str]] = ...) -> None: ...

class Track(_message.Message):
    __slots__ = ("track_id", "participant_id", "kind", "codec", "label")
    TRACK_ID_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANT_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CODEC_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    track_id: int
    participant_id: str
    kind: TrackKind
    codec: str
    label: str
    def __init__(self, track_id: _Optional[int] = ..., participant_id: _Optional[str] = ..., kind: _Optional[_Union[TrackKind, str]] = ..., codec: _Optional[str] = ..., label: _Optional[str] = ...) -> None: ...

class JoinResponse(_message.Message):
    __slots__ = ("participant_id", "meeting_id", "roster", "tracks", "max_frame_payload_bytes")
    PARTICIPANT_ID_FIELD_NUMBER: _ClassVar[int]
    MEETING_ID_FIELD_NUMBER: _ClassVar[int]
    ROSTER_FIELD_NUMBER: _ClassVar[int]
    TRACKS_FIELD_NUMBER: _ClassVar[int]
    MAX_FRAME_PAYLOAD_BYTES_FIELD_NUMBER: _ClassVar[int]
    participant_id: str
    meeting_id: str
    roster: _containers.RepeatedCompositeFieldContainer[Participant]
    tracks: _containers.RepeatedCompositeFieldContainer[Track]
    max_frame_payload_bytes: int
    def __init__(self, participant_id: _Optional[str] = ..., meeting_id: _Optional[str] = ..., roster: _Optional[_Iterable[_Union[Participant, _Mapping]]] = ..., tracks: _Optional[_Iterable[_Union[Track, _Mapping]]] = ..., max_frame_payload_bytes: _Optional[int] = ...) -> None: ...

class PublishResponse(_message.Message):
    __slots__ = ("track",)
    TRACK_FIELD_NUMBER: _ClassVar[int]
    track: Track
    def __init__(self, track: _Optional[_Union[Track, _Mapping]] = ...) -> None: ...

class Ack(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Pong(_message.Message):
    __slots__ = ("client_time_us", "server_time_us")
    CLIENT_TIME_US_FIELD_NUMBER: _ClassVar[int]
    SERVER_TIME_US_FIELD_NUMBER: _ClassVar[int]
    client_time_us: int
    server_time_us: int
    def __init__(self, client_time_us: _Optional[int] = ..., server_time_us: _Optional[int] = ...) -> None: ...

class Error(_message.Message):
    __slots__ = ("code", "message", "fatal")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FATAL_FIELD_NUMBER: _ClassVar[int]
    code: ErrorCode
    message: str
    fatal: bool
    def __init__(self, code: _Optional[_Union[ErrorCode, str]] = ..., message: _Optional[str] = ..., fatal: _Optional[bool] = ...) -> None: ...

class ParticipantJoined(_message.Message):
    __slots__ = ("participant",)
    PARTICIPANT_FIELD_NUMBER: _ClassVar[int]
    participant: Participant
    def __init__(self, participant: _Optional[_Union[Participant, _Mapping]] = ...) -> None: ...

class ParticipantLeft(_message.Message):
    __slots__ = ("participant_id", "reason")
    class Reason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        REASON_UNSPECIFIED: _ClassVar[ParticipantLeft.Reason]
        REASON_LEFT: _ClassVar[ParticipantLeft.Reason]
        REASON_DISCONNECTED: _ClassVar[ParticipantLeft.Reason]
        REASON_REMOVED: _ClassVar[ParticipantLeft.Reason]
    REASON_UNSPECIFIED: ParticipantLeft.Reason
    REASON_LEFT: ParticipantLeft.Reason
    REASON_DISCONNECTED: ParticipantLeft.Reason
    REASON_REMOVED: ParticipantLeft.Reason
    PARTICIPANT_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    participant_id: str
    reason: ParticipantLeft.Reason
    def __init__(self, participant_id: _Optional[str] = ..., reason: _Optional[_Union[ParticipantLeft.Reason, str]] = ...) -> None: ...

class TrackPublished(_message.Message):
    __slots__ = ("track",)
    TRACK_FIELD_NUMBER: _ClassVar[int]
    track: Track
    def __init__(self, track: _Optional[_Union[Track, _Mapping]] = ...) -> None: ...

class TrackUnpublished(_message.Message):
    __slots__ = ("track_id",)
    TRACK_ID_FIELD_NUMBER: _ClassVar[int]
    track_id: int
    def __init__(self, track_id: _Optional[int] = ...) -> None: ...

class KeyframeRequest(_message.Message):
    __slots__ = ("track_id",)
    TRACK_ID_FIELD_NUMBER: _ClassVar[int]
    track_id: int
    def __init__(self, track_id: _Optional[int] = ...) -> None: ...

class KeyMessageReceived(_message.Message):
    __slots__ = ("from_participant_id", "payload")
    FROM_PARTICIPANT_ID_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    from_participant_id: str
    payload: bytes
    def __init__(self, from_participant_id: _Optional[str] = ..., payload: _Optional[bytes] = ...) -> None: ...

class Muted(_message.Message):
    __slots__ = ("by_participant_id", "track_ids")
    BY_PARTICIPANT_ID_FIELD_NUMBER: _ClassVar[int]
    TRACK_IDS_FIELD_NUMBER: _ClassVar[int]
    by_participant_id: str
    track_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, by_participant_id: _Optional[str] = ..., track_ids: _Optional[_Iterable[int]] = ...) -> None: ...

class Notice(_message.Message):
    __slots__ = ("kind", "message", "reconnect_url")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[Notice.Kind]
        KIND_DRAINING: _ClassVar[Notice.Kind]
        KIND_RECONNECT: _ClassVar[Notice.Kind]
    KIND_UNSPECIFIED: Notice.Kind
    KIND_DRAINING: Notice.Kind
    KIND_RECONNECT: Notice.Kind
    KIND_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RECONNECT_URL_FIELD_NUMBER: _ClassVar[int]
    kind: Notice.Kind
    message: str
    reconnect_url: str
    def __init__(self, kind: _Optional[_Union[Notice.Kind, str]] = ..., message: _Optional[str] = ..., reconnect_url: _Optional[str] = ...) -> None: ...
