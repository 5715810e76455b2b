"""A stand-in GPU array module: NumPy's arithmetic behind arrays that refuse to mix with host NumPy.

It behaves as CuPy does where it matters for a port: its arrays are not
`np.ndarray`s; a NumPy function or ufunc given one raises TypeError
(`np.asarray` included), and its own functions and operators refuse host
arrays (Python and NumPy scalars are fine); reductions return 0-d device
arrays, which reach the host only through `float()`, `int()`, `bool()`,
`.item()`, `.tolist()`, `.get()` or `asnumpy`. Each of those is counted in
`MODULE.transfers`, so a test can bound the device→host copies per step.

So training through a Backend on this module fails wherever a compute path
falls back to host NumPy, which a grep for `np.` cannot prove.
"""

from __future__ import annotations

import types

import numpy as np


class HostArrayMixed(TypeError):
    """A host NumPy array met a device array."""


def _unwrap(value):
    if isinstance(value, DeviceArray):
        return value._a
    if isinstance(value, np.ndarray):
        raise HostArrayMixed(f"a host numpy array {value.shape} {value.dtype} was given to the device module")
    if isinstance(value, tuple):
        return tuple(_unwrap(v) for v in value)
    if isinstance(value, list):
        return [_unwrap(v) for v in value]
    if isinstance(value, dict):
        return {k: _unwrap(v) for k, v in value.items()}
    return value


def _wrap(value):
    if isinstance(value, (np.ndarray, np.generic)) and not isinstance(value, (type, np.dtype)):
        return DeviceArray(np.asarray(value) if isinstance(value, np.generic) else value)
    if isinstance(value, tuple):
        return tuple(_wrap(v) for v in value)
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    return value


def _call(function):
    def device_function(*args, **kwargs):
        return _wrap(function(*_unwrap(args), **_unwrap(kwargs)))

    device_function.__name__ = getattr(function, "__name__", "function")
    return device_function


class DeviceArray:
    """An array 'on the device': a NumPy array inside, never handed to host NumPy."""

    __slots__ = ("_a",)
    __array_ufunc__ = None  # NumPy ufuncs and operators with a host array refuse (TypeError)
    __hash__ = None

    def __init__(self, a: np.ndarray):
        self._a = a

    def __array__(self, *args, **kwargs):
        raise HostArrayMixed("implicit conversion of a device array to a host numpy array")

    def __array_function__(self, func, types, args, kwargs):
        raise HostArrayMixed(f"numpy.{func.__name__} was given a device array")

    # -- host transfers (counted) -------------------------------------------
    def _host(self):
        MODULE.transfers += 1
        return self._a

    def get(self):
        return self._host().copy()

    def item(self):
        return self._host().item()

    def tolist(self):
        return self._host().tolist()

    def __float__(self):
        return float(self._host())

    def __int__(self):
        return int(self._host())

    def __index__(self):
        return int(self._host())

    def __bool__(self):
        return bool(self._host())

    def __format__(self, spec):
        return format(self._host().item() if self._a.ndim == 0 else self._host(), spec)

    def __repr__(self):
        return f"DeviceArray({self._a!r})"

    # -- the array surface ----------------------------------------------------
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: self._a.flags)
    T = property(lambda self: DeviceArray(self._a.T))

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        return (_wrap(row) for row in self._a)

    def __getitem__(self, key):
        return _wrap(self._a[_unwrap(key)])

    def __setitem__(self, key, value):
        self._a[_unwrap(key)] = _unwrap(value)

    def __getattr__(self, name):
        if name.startswith("__"):  # no __array_interface__, __array_struct__, __dlpack__: NumPy cannot read it
            raise AttributeError(name)
        attr = getattr(self._a, name)
        return _call(attr) if callable(attr) else _wrap(attr)


def _binary(op, reflected=False):
    def method(self, other):
        a, b = self._a, _unwrap(other)
        return _wrap(op(b, a) if reflected else op(a, b))

    return method


def _inplace(op):
    def method(self, other):
        op(self._a, _unwrap(other), out=self._a)
        return self

    return method


for _name, _op in {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "truediv": np.true_divide, "floordiv": np.floor_divide,
    "mod": np.mod, "pow": np.power, "matmul": np.matmul, "and": np.bitwise_and, "or": np.bitwise_or,
    "xor": np.bitwise_xor,
}.items():  # fmt: skip
    setattr(DeviceArray, f"__{_name}__", _binary(_op))
    setattr(DeviceArray, f"__r{_name}__", _binary(_op, reflected=True))
    if _name != "matmul":
        setattr(DeviceArray, f"__i{_name}__", _inplace(_op))
for _name, _op in {"lt": np.less, "le": np.less_equal, "gt": np.greater, "ge": np.greater_equal,
                   "eq": np.equal, "ne": np.not_equal}.items():  # fmt: skip
    setattr(DeviceArray, f"__{_name}__", _binary(_op))
for _name, _op in {"neg": np.negative, "pos": np.positive, "abs": np.absolute, "invert": np.invert}.items():
    setattr(DeviceArray, f"__{_name}__", lambda self, _op=_op: _wrap(_op(self._a)))


class _StandInModule(types.ModuleType):
    """The module: NumPy's names, each taking and giving device arrays."""

    ndarray = DeviceArray
    __version__ = "0.0-standin"
    transfers = 0  # device -> host copies so far
    uploads = 0  # host -> device copies so far

    def asarray(self, a, dtype=None):
        if isinstance(a, DeviceArray):
            return a if dtype is None or a.dtype == np.dtype(dtype) else DeviceArray(a._a.astype(dtype))
        self.uploads += 1
        return DeviceArray(np.array(a, dtype=dtype))

    def asnumpy(self, a):
        if isinstance(a, DeviceArray):
            return a.get()
        return np.asarray(a)

    def __getattr__(self, name):
        attr = getattr(np, name)
        if isinstance(attr, (type, types.ModuleType)) or not callable(attr):
            return attr
        return _call(attr)


MODULE = _StandInModule("standin_gpu_module")
