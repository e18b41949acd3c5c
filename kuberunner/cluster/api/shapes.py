"""JSON type checks for the object fields this server and its kubelet read.

The real API server decodes a body into Go structs, so `"containers": "x"` is a 400 before any
validation runs. We store plain JSON, so this module plays the decoder's part for the fields that
code reads: after `check()` passes, the store, the validator and the kubelet can index those fields
without guarding against wrong types. Fields not listed here are kept as sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Shape:
    """Expected JSON type: `kind` is string|integer|boolean|number|list|map|object|any."""

    kind: str
    go: str
    item: Shape | None = None
    fields: dict[str, Shape] = field(default_factory=dict)


STR = Shape("string", "string")
INT = Shape("integer", "int64")
BOOL = Shape("boolean", "bool")
ANY = Shape("any", "interface {}")
STR_MAP = Shape("map", "map[string]string", STR)
STR_LIST = Shape("list", "[]string", STR)


def obj(go: str, **fields: Shape) -> Shape:
    return Shape("object", go, None, fields)


def list_of(item: Shape) -> Shape:
    return Shape("list", f"[]{item.go}", item)


OWNER_REF = obj("v1.OwnerReference", apiVersion=STR, kind=STR, name=STR, uid=STR, controller=BOOL)
META = obj(
    "v1.ObjectMeta",
    name=STR,
    generateName=STR,
    namespace=STR,
    uid=STR,
    resourceVersion=STR,
    labels=STR_MAP,
    annotations=STR_MAP,
    finalizers=STR_LIST,
    ownerReferences=list_of(OWNER_REF),
    deletionGracePeriodSeconds=INT,
)
KEY_REF = obj("v1.SecretKeySelector", name=STR, key=STR, optional=BOOL)
ENV = obj(
    "v1.EnvVar",
    name=STR,
    value=STR,
    valueFrom=obj(
        "v1.EnvVarSource",
        secretKeyRef=KEY_REF,
        configMapKeyRef=obj("v1.ConfigMapKeySelector", name=STR, key=STR, optional=BOOL),
        fieldRef=obj("v1.ObjectFieldSelector", fieldPath=STR, apiVersion=STR),
    ),
)
RESOURCES = obj(
    "v1.ResourceRequirements",
    limits=Shape("map", "v1.ResourceList", ANY),
    requests=Shape("map", "v1.ResourceList", ANY),
)
CONTAINER = obj(
    "v1.Container",
    name=STR,
    image=STR,
    command=STR_LIST,
    args=STR_LIST,
    workingDir=STR,
    env=list_of(ENV),
    envFrom=list_of(obj("v1.EnvFromSource", prefix=STR)),
    volumeMounts=list_of(obj("v1.VolumeMount", name=STR, mountPath=STR, subPath=STR, readOnly=BOOL)),
    ports=list_of(obj("v1.ContainerPort", containerPort=INT, name=STR, protocol=STR)),
    resources=RESOURCES,
    stdin=BOOL,
    stdinOnce=BOOL,
    tty=BOOL,
    imagePullPolicy=STR,
    terminationMessagePath=STR,
    terminationMessagePolicy=STR,
)
KEY_TO_PATH = list_of(obj("v1.KeyToPath", key=STR, path=STR, mode=INT))
VOLUME = obj(
    "v1.Volume",
    name=STR,
    emptyDir=obj("v1.EmptyDirVolumeSource", medium=STR, sizeLimit=ANY),
    secret=obj("v1.SecretVolumeSource", secretName=STR, items=KEY_TO_PATH, defaultMode=INT, optional=BOOL),
    configMap=obj("v1.ConfigMapVolumeSource", name=STR, items=KEY_TO_PATH, defaultMode=INT, optional=BOOL),
    hostPath=obj("v1.HostPathVolumeSource", path=STR, type=STR),
)
POD = obj(
    "v1.Pod",
    metadata=META,
    spec=obj(
        "v1.PodSpec",
        containers=list_of(CONTAINER),
        initContainers=list_of(CONTAINER),
        volumes=list_of(VOLUME),
        restartPolicy=STR,
        terminationGracePeriodSeconds=INT,
        activeDeadlineSeconds=INT,
        nodeName=STR,
        serviceAccountName=STR,
        hostNetwork=BOOL,
        imagePullSecrets=list_of(obj("v1.LocalObjectReference", name=STR)),
    ),
    status=obj("v1.PodStatus", phase=STR),
)
SECRET = obj("v1.Secret", metadata=META, data=STR_MAP, stringData=STR_MAP, type=STR, immutable=BOOL)
CONFIGMAP = obj("v1.ConfigMap", metadata=META, data=STR_MAP, binaryData=STR_MAP, immutable=BOOL)
EVENT = obj(
    "v1.Event",
    metadata=META,
    involvedObject=obj("v1.ObjectReference", kind=STR, name=STR, namespace=STR, uid=STR, fieldPath=STR),
    reason=STR,
    message=STR,
    type=STR,
    count=INT,
)
NAMESPACE = obj("v1.Namespace", metadata=META)
LOCAL_REFS = list_of(obj("v1.LocalObjectReference", name=STR))
SERVICE_ACCOUNT = obj(
    "v1.ServiceAccount",
    metadata=META,
    secrets=list_of(obj("v1.ObjectReference", name=STR)),
    imagePullSecrets=LOCAL_REFS,
    automountServiceAccountToken=BOOL,
)

SHAPES: dict[str, Shape] = {
    "pods": POD,
    "secrets": SECRET,
    "configmaps": CONFIGMAP,
    "events": EVENT,
    "namespaces": NAMESPACE,
    "serviceaccounts": SERVICE_ACCOUNT,
}


class ShapeError(ValueError):
    """A field has the wrong JSON type; the message reads like Go's json.Unmarshal error."""


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _ok(shape: Shape, value: Any) -> bool:
    if value is None or shape.kind == "any":
        return True  # JSON null decodes to the zero value in Go
    if shape.kind == "string":
        return isinstance(value, str)
    if shape.kind == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer()
        )
    if shape.kind == "boolean":
        return isinstance(value, bool)
    if shape.kind == "list":
        return isinstance(value, list)
    return isinstance(value, dict)


def check(resource: str, body: Any) -> None:
    """Raise ShapeError at the first field whose JSON type cannot decode into the Go type."""
    shape = SHAPES.get(resource)
    if shape is None:
        return
    if not isinstance(body, dict):
        raise ShapeError(f"json: cannot unmarshal {_json_type(body)} into Go value of type {shape.go}")
    _walk(shape, body, shape.go.removeprefix("v1."), "")


def _walk(shape: Shape, value: Any, struct: str, path: str) -> None:
    if not _ok(shape, value):
        where = f"Go struct field {struct}.{path}" if path else "Go value"
        raise ShapeError(f"json: cannot unmarshal {_json_type(value)} into {where} of type {shape.go}")
    if value is None:
        return
    if shape.kind == "object":
        inner = shape.go.removeprefix("v1.") if path else struct
        for name, sub in shape.fields.items():
            if name in value:
                _walk(sub, value[name], inner if path else struct, f"{path}.{name}" if path else name)
    elif shape.kind in ("list", "map") and shape.item is not None:
        items = value if isinstance(value, list) else list(value.values())
        for item in items:
            _walk(shape.item, item, struct, path)
