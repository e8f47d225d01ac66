// The bridge between Python and generated modules: the only pybind11 code in the cpu
// backend, compiled once per machine into the cache (`driver.build_bridge` builds it,
// `driver.load_bridge` imports it) so that generated modules stay plain C++ and
// compile in well under a second.
//
// A generated module exports
//     extern "C" int lanterna_entry(void* const* inputs, void* const* outputs,
//                                   char* err, size_t errlen);
// returning 0 on success, 2 for an index error and 1 for any other runtime error
// (with a message in `err`). The bridge dlopens a module, checks the arrays it is
// handed against the module's declared signature, passes their data pointers (no
// copies), releases the GIL while the module runs, and turns error codes into
// Python exceptions (lanterna.errors.LanternaIndexError / LanternaRuntimeError).

#include <dlfcn.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstddef>
#include <cstdlib>
#include <memory>
#include <new>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace py = pybind11;

namespace {

using EntryFn = int (*)(void* const*, void* const*, char*, size_t);
using StatsFn = void (*)(uint64_t*);

constexpr size_t kErrLen = 4096;

struct ArraySpec {
  std::vector<py::ssize_t> shape;
  py::dtype dtype;
};

std::string shape_str(const py::ssize_t* dims, py::ssize_t ndim) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < ndim; ++i) {
    s += std::to_string(dims[i]);
    if (ndim == 1 || i + 1 < ndim) s += ",";
    if (i + 1 < ndim) s += " ";
  }
  return s + ")";
}

// A loaded generated module with the signature it was compiled for.
class Module {
 public:
  Module(std::string path, std::vector<ArraySpec> inputs, std::vector<ArraySpec> outputs)
      : path_(std::move(path)), inputs_(std::move(inputs)), outputs_(std::move(outputs)) {
    handle_ = dlopen(path_.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle_ == nullptr) {
      const char* why = dlerror();
      throw py::value_error("cannot load generated module " + path_ + ": " +
                            (why ? why : "unknown dlopen error"));
    }
    dlerror();
    void* sym = dlsym(handle_, "lanterna_entry");
    if (sym == nullptr) {
      dlclose(handle_);
      handle_ = nullptr;
      throw py::value_error("generated module " + path_ +
                            " has no 'lanterna_entry' symbol (was it declared extern \"C\"?)");
    }
    entry_ = reinterpret_cast<EntryFn>(sym);
    stats_ = reinterpret_cast<StatsFn>(dlsym(handle_, "lanterna_arena_stats"));
    dlerror();
  }

  ~Module() {
    if (handle_ != nullptr) dlclose(handle_);
  }

  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  void call(const py::list& inputs, const py::list& outputs) const {
    std::vector<void*> in_ptrs = pointers(inputs, inputs_, "input", false);
    std::vector<void*> out_ptrs = pointers(outputs, outputs_, "output", true);
    char err[kErrLen] = {0};
    int rc;
    {
      py::gil_scoped_release release;
      rc = entry_(in_ptrs.data(), out_ptrs.data(), err, kErrLen);
    }
    if (rc == 0) return;
    err[kErrLen - 1] = '\0';
    std::string message = err[0] ? err : "generated code failed without a message";
    const char* cls = rc == 2 ? "LanternaIndexError" : "LanternaRuntimeError";
    if (rc != 1 && rc != 2) message += " (error code " + std::to_string(rc) + ")";
    py::object exc = py::module_::import("lanterna.errors").attr(cls);
    PyErr_SetString(exc.ptr(), message.c_str());
    throw py::error_already_set();
  }

  // The arena statistics of the module's last finished call, in bytes.
  py::dict arena_stats() const {
    uint64_t v[4] = {0, 0, 0, 0};
    if (stats_ != nullptr) stats_(v);
    py::dict d;
    d["requested"] = v[0];
    d["reused"] = v[1];
    d["fresh"] = v[2];
    d["held"] = v[3];
    return d;
  }

  const std::string& path() const { return path_; }
  size_t num_inputs() const { return inputs_.size(); }
  size_t num_outputs() const { return outputs_.size(); }

 private:
  std::vector<void*> pointers(const py::list& arrays, const std::vector<ArraySpec>& specs,
                              const char* what, bool writable) const {
    if (arrays.size() != specs.size()) {
      throw py::value_error(std::string("expected ") + std::to_string(specs.size()) + " " +
                            what + " arrays, got " + std::to_string(arrays.size()));
    }
    auto& api = py::detail::npy_api::get();
    std::vector<void*> ptrs;
    ptrs.reserve(specs.size() + 1);  // never empty: data() of an empty vector may be null
    for (size_t i = 0; i < specs.size(); ++i) {
      py::handle obj = arrays[i];
      std::string name = std::string(what) + " " + std::to_string(i);
      if (!py::isinstance<py::array>(obj)) {
        throw py::type_error(name + " is not a numpy array");
      }
      auto arr = py::reinterpret_borrow<py::array>(obj);
      const ArraySpec& spec = specs[i];
      if (!api.PyArray_EquivTypes_(arr.dtype().ptr(), spec.dtype.ptr())) {
        throw py::type_error(name + " has dtype " + py::str(arr.dtype()).cast<std::string>() +
                             ", expected " + py::str(spec.dtype).cast<std::string>());
      }
      bool same_shape = arr.ndim() == static_cast<py::ssize_t>(spec.shape.size());
      for (py::ssize_t d = 0; same_shape && d < arr.ndim(); ++d) {
        same_shape = arr.shape(d) == spec.shape[d];
      }
      if (!same_shape) {
        throw py::value_error(name + " has shape " + shape_str(arr.shape(), arr.ndim()) +
                              ", expected " +
                              shape_str(spec.shape.data(),
                                        static_cast<py::ssize_t>(spec.shape.size())));
      }
      int flags = arr.flags();
      if (!(flags & py::detail::npy_api::NPY_ARRAY_C_CONTIGUOUS_) ||
          !(flags & py::detail::npy_api::NPY_ARRAY_ALIGNED_)) {
        throw py::value_error(name + " is not an aligned C-contiguous array");
      }
      if (writable && !(flags & py::detail::npy_api::NPY_ARRAY_WRITEABLE_)) {
        throw py::value_error(name + " is not writeable");
      }
      ptrs.push_back(const_cast<void*>(arr.data()));
    }
    return ptrs;
  }

  std::string path_;
  std::vector<ArraySpec> inputs_;
  std::vector<ArraySpec> outputs_;
  void* handle_ = nullptr;
  EntryFn entry_ = nullptr;
  StatsFn stats_ = nullptr;
};

// Result arrays that are large come from here rather than from numpy: a freed
// result's buffer goes back to a free list of its size, already mapped and
// touched, and the next call's result of that size takes it. A training step's
// new parameters then reuse the pages of the ones before instead of costing a
// fresh mapping (and a page fault per 4 KiB) each step. The lists hold at most
// kPoolCap bytes; beyond that a buffer is freed. Only touched with the GIL held.
class OutputPool {
 public:
  static constexpr size_t kAlign = 64;
  static constexpr size_t kPoolCap = size_t(512) << 20;

  void* take(size_t bytes) {
    auto it = free_.find(bytes);
    if (it != free_.end() && !it->second.empty()) {
      void* p = it->second.back();
      it->second.pop_back();
      cached_ -= bytes;
      return p;
    }
    void* p = std::aligned_alloc(kAlign, (bytes + kAlign - 1) / kAlign * kAlign);
    if (p == nullptr) throw std::bad_alloc();
    return p;
  }

  void give(void* p, size_t bytes) {
    if (cached_ + bytes > kPoolCap) {
      std::free(p);
      return;
    }
    free_[bytes].push_back(p);
    cached_ += bytes;
  }

  size_t cached() const { return cached_; }

 private:
  std::unordered_map<size_t, std::vector<void*>> free_;
  size_t cached_ = 0;
};

// Never destroyed: arrays may outlive the module's statics at interpreter exit.
OutputPool& output_pool() {
  static OutputPool* pool = new OutputPool();
  return *pool;
}

py::array pooled_empty(const std::vector<py::ssize_t>& shape, const py::dtype& dtype) {
  size_t bytes = static_cast<size_t>(dtype.itemsize());
  for (py::ssize_t d : shape) bytes *= static_cast<size_t>(d);
  size_t key = bytes == 0 ? 1 : bytes;
  void* data = output_pool().take(key);
  // The capsule holds the buffer, its context the size; its destructor (the last
  // view of the array gone) returns the buffer.
  py::capsule owner(data, "lanterna.result", [](PyObject* cap) {
    void* buf = PyCapsule_GetPointer(cap, "lanterna.result");
    output_pool().give(buf, reinterpret_cast<size_t>(PyCapsule_GetContext(cap)));
  });
  PyCapsule_SetContext(owner.ptr(), reinterpret_cast<void*>(key));
  return py::array(dtype, shape, data, owner);
}

std::vector<ArraySpec> to_specs(const py::iterable& specs) {
  std::vector<ArraySpec> out;
  for (py::handle item : specs) {
    auto pair = py::reinterpret_borrow<py::tuple>(item);
    if (pair.size() != 2) throw py::value_error("an array spec is a (shape, dtype) pair");
    ArraySpec spec{pair[0].cast<std::vector<py::ssize_t>>(), py::dtype::from_args(pair[1])};
    out.push_back(std::move(spec));
  }
  return out;
}

}  // namespace

PYBIND11_MODULE(_lanterna_bridge, m) {
  m.doc() = "Loads generated lanterna modules and calls their C entry point.";

  py::class_<Module, std::shared_ptr<Module>>(m, "Module")
      .def_property_readonly("path", &Module::path)
      .def_property_readonly("num_inputs", &Module::num_inputs)
      .def_property_readonly("num_outputs", &Module::num_outputs)
      .def("arena_stats", &Module::arena_stats,
           "Bytes the last finished call asked of its arena: requested, reused (served by "
           "buffers released earlier in the call), fresh (its footprint) and held (by the "
           "arena's chunks).")
      .def("__repr__",
           [](const Module& mod) { return "<lanterna generated module " + mod.path() + ">"; });

  m.def(
      "load",
      [](const std::string& path, const py::iterable& inputs, const py::iterable& outputs) {
        return std::make_shared<Module>(path, to_specs(inputs), to_specs(outputs));
      },
      py::arg("path"), py::arg("inputs"), py::arg("outputs"),
      "dlopen a generated module and find `lanterna_entry`; `inputs` and `outputs` are "
      "lists of (shape, dtype) pairs that calls are checked against.");

  m.def("empty", &pooled_empty, py::arg("shape"), py::arg("dtype"),
        "An uninitialized C-contiguous array whose buffer comes from, and goes back to, "
        "the bridge's pool of result buffers (for large results).");
  m.def(
      "pooled_bytes", []() { return output_pool().cached(); },
      "Bytes of freed result buffers the pool holds for reuse.");

  m.def(
      "call",
      [](const Module& mod, const py::list& inputs, const py::list& outputs) {
        mod.call(inputs, outputs);
      },
      py::arg("module"), py::arg("inputs"), py::arg("outputs"),
      "Run the module on the data of `inputs`, writing into `outputs` (numpy arrays, "
      "C-contiguous, of the declared shapes and dtypes; nothing is copied). The GIL is "
      "released while it runs.");
}
