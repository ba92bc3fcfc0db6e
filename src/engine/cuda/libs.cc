#include "engine/cuda/libs.h"

#include <dlfcn.h>

#include <mutex>
#include <string>

namespace tessera::cuda {
namespace {

// The first of `names` that opens; dlerror's words for the last one otherwise.
Result<void*> Open(std::initializer_list<const char*> names) {
  std::string last;
  for (const char* n : names) {
    if (void* h = dlopen(n, RTLD_NOW | RTLD_LOCAL)) return h;
    const char* e = dlerror();
    last = e ? e : n;
  }
  return Status::Unavailable("cannot load " + std::string(*names.begin()) + " (" + last +
                             "); put the CUDA toolkit's lib64 (or PyTorch's "
                             "site-packages/nvidia/*/lib) on LD_LIBRARY_PATH");
}

Result<Libs> Load() {
  Libs l;
  TESSERA_ASSIGN_OR_RETURN(void* blas, Open({"libcublasLt.so.13", "libcublasLt.so"}));
  TESSERA_ASSIGN_OR_RETURN(void* dnn, Open({"libcudnn.so.9", "libcudnn.so"}));
#define TESSERA_LOAD_FN(handle, lib, name)                           \
  l.name = reinterpret_cast<decltype(l.name)>(dlsym(handle, #name)); \
  if (!l.name) return Status::Unavailable(std::string(lib) + " has no symbol " #name);
#define TESSERA_LOAD_BLAS(name) TESSERA_LOAD_FN(blas, "libcublasLt", name)
#define TESSERA_LOAD_DNN(name) TESSERA_LOAD_FN(dnn, "libcudnn", name)
  TESSERA_CUBLASLT_FUNCTIONS(TESSERA_LOAD_BLAS)
  TESSERA_CUDNN_FUNCTIONS(TESSERA_LOAD_DNN)
#undef TESSERA_LOAD_BLAS
#undef TESSERA_LOAD_DNN
#undef TESSERA_LOAD_FN
  return l;  // the handles stay open for the process's lifetime
}

}  // namespace

Result<const Libs*> LoadLibs() {
  static std::once_flag once;
  static Result<Libs> libs = Status::Internal("not loaded");
  std::call_once(once, [] { libs = Load(); });
  if (!libs.ok()) return libs.status();
  return &*libs;
}

}  // namespace tessera::cuda
