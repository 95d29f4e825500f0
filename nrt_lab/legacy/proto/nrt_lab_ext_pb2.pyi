from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class list_models_request(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class model_info(_message.Message):
    __slots__ = ("nn_id", "eg_id", "status", "name", "uuid", "nc_start_index", "nc_count", "device_start_index", "session_id", "infer_count")
    NN_ID_FIELD_NUMBER: _ClassVar[int]
    EG_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    UUID_FIELD_NUMBER: _ClassVar[int]
    NC_START_INDEX_FIELD_NUMBER: _ClassVar[int]
    NC_COUNT_FIELD_NUMBER: _ClassVar[int]
    DEVICE_START_INDEX_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    INFER_COUNT_FIELD_NUMBER: _ClassVar[int]
    nn_id: int
    eg_id: int
    status: str
    name: str
    uuid: str
    nc_start_index: int
    nc_count: int
    device_start_index: int
    session_id: int
    infer_count: int
    def __init__(self, nn_id: _Optional[int] = ..., eg_id: _Optional[int] = ..., status: _Optional[str] = ..., name: _Optional[str] = ..., uuid: _Optional[str] = ..., nc_start_index: _Optional[int] = ..., nc_count: _Optional[int] = ..., device_start_index: _Optional[int] = ..., session_id: _Optional[int] = ..., infer_count: _Optional[int] = ...) -> None: ...

class list_models_response(_message.Message):
    __slots__ = ("models", "runtime_version", "pid", "devices", "nc_count", "address")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_VERSION_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    NC_COUNT_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[model_info]
    runtime_version: str
    pid: int
    devices: _containers.RepeatedScalarFieldContainer[int]
    nc_count: int
    address: str
    def __init__(self, models: _Optional[_Iterable[_Union[model_info, _Mapping]]] = ..., runtime_version: _Optional[str] = ..., pid: _Optional[int] = ..., devices: _Optional[_Iterable[int]] = ..., nc_count: _Optional[int] = ..., address: _Optional[str] = ...) -> None: ...
