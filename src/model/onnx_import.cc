#include "tessera/model/onnx_import.h"

#include <onnx/onnx_pb.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <unordered_set>

namespace tessera {
namespace {

constexpr int64_t kMaxElements = int64_t{1} << 34;  // 16 Gi elements: beyond any model we load

template <typename Src, typename Dst>
void CopyTyped(const Src& field, Dst* out) {
  for (int i = 0; i < field.size(); ++i) out[i] = static_cast<Dst>(field.Get(i));
}

Result<Attribute> AttributeFromProto(const onnx::AttributeProto& a) {
  Attribute at;
  switch (a.type()) {
    case onnx::AttributeProto::INT:
      at.kind = Attribute::Kind::kInt;
      at.i = a.i();
      break;
    case onnx::AttributeProto::FLOAT:
      at.kind = Attribute::Kind::kFloat;
      at.f = a.f();
      break;
    case onnx::AttributeProto::STRING:
      at.kind = Attribute::Kind::kString;
      at.s = a.s();
      break;
    case onnx::AttributeProto::INTS:
      at.kind = Attribute::Kind::kInts;
      at.ints.assign(a.ints().begin(), a.ints().end());
      break;
    case onnx::AttributeProto::FLOATS:
      at.kind = Attribute::Kind::kFloats;
      at.floats.assign(a.floats().begin(), a.floats().end());
      break;
    case onnx::AttributeProto::STRINGS:
      at.kind = Attribute::Kind::kStrings;
      at.strings.assign(a.strings().begin(), a.strings().end());
      break;
    case onnx::AttributeProto::TENSOR: {
      at.kind = Attribute::Kind::kTensor;
      TESSERA_ASSIGN_OR_RETURN(at.t, TensorFromProto(a.t()));
      break;
    }
    default:
      return Status::Unimplemented("attribute '" + a.name() + "' has unsupported type " +
                                   std::to_string(a.type()) + " (graphs/sparse tensors)");
  }
  return at;
}

Result<ValueInfo> ValueInfoFromProto(const onnx::ValueInfoProto& v) {
  ValueInfo vi;
  vi.name = v.name();
  if (!v.has_type() || !v.type().has_tensor_type())
    return Status::Unimplemented("value '" + v.name() +
                                 "' is not a tensor (sequences/maps are "
                                 "not supported)");
  const auto& tt = v.type().tensor_type();
  TESSERA_ASSIGN_OR_RETURN(vi.dtype, DataTypeFromOnnx(tt.elem_type()));
  if (tt.has_shape()) {
    for (const auto& d : tt.shape().dim()) {
      if (d.has_dim_value()) {
        if (d.dim_value() < 0)
          return Status::InvalidArgument("value '" + v.name() + "' has negative dimension");
        vi.dims.push_back(d.dim_value());
        vi.dim_names.emplace_back();
      } else {
        vi.dims.push_back(-1);
        vi.dim_names.push_back(d.dim_param());
      }
    }
  }
  return vi;
}

}  // namespace

Result<DataType> DataTypeFromOnnx(int t) {
  switch (t) {
    case onnx::TensorProto::FLOAT:
      return DataType::kFloat32;
    case onnx::TensorProto::UINT8:
      return DataType::kUInt8;
    case onnx::TensorProto::INT8:
      return DataType::kInt8;
    case onnx::TensorProto::UINT16:
      return DataType::kUInt16;
    case onnx::TensorProto::INT16:
      return DataType::kInt16;
    case onnx::TensorProto::INT32:
      return DataType::kInt32;
    case onnx::TensorProto::INT64:
      return DataType::kInt64;
    case onnx::TensorProto::BOOL:
      return DataType::kBool;
    case onnx::TensorProto::FLOAT16:
      return DataType::kFloat16;
    case onnx::TensorProto::DOUBLE:
      return DataType::kFloat64;
    case onnx::TensorProto::UINT32:
      return DataType::kUInt32;
    case onnx::TensorProto::UINT64:
      return DataType::kUInt64;
    case onnx::TensorProto::BFLOAT16:
      return DataType::kBFloat16;
    default:
      return Status::Unimplemented("ONNX element type " + std::to_string(t) +
                                   " is not supported (strings/complex)");
  }
}

int DataTypeToOnnx(DataType t) {
  switch (t) {
    case DataType::kFloat32:
      return onnx::TensorProto::FLOAT;
    case DataType::kUInt8:
      return onnx::TensorProto::UINT8;
    case DataType::kInt8:
      return onnx::TensorProto::INT8;
    case DataType::kUInt16:
      return onnx::TensorProto::UINT16;
    case DataType::kInt16:
      return onnx::TensorProto::INT16;
    case DataType::kInt32:
      return onnx::TensorProto::INT32;
    case DataType::kInt64:
      return onnx::TensorProto::INT64;
    case DataType::kBool:
      return onnx::TensorProto::BOOL;
    case DataType::kFloat16:
      return onnx::TensorProto::FLOAT16;
    case DataType::kFloat64:
      return onnx::TensorProto::DOUBLE;
    case DataType::kUInt32:
      return onnx::TensorProto::UINT32;
    case DataType::kUInt64:
      return onnx::TensorProto::UINT64;
    case DataType::kBFloat16:
      return onnx::TensorProto::BFLOAT16;
    default:
      return onnx::TensorProto::UNDEFINED;
  }
}

namespace {
// Moves a large raw_data payload out of `p` into a tensor without copying it.
Result<Tensor> AdoptTensor(onnx::TensorProto* p) {
  if (p->has_raw_data() && p->raw_data().size() >= 4096 &&
      p->data_location() != onnx::TensorProto::EXTERNAL && p->external_data_size() == 0) {
    auto dt = DataTypeFromOnnx(p->data_type());
    if (dt.ok()) {
      Shape shape(p->dims().begin(), p->dims().end());
      int64_t n = 1;
      bool sane = true;
      for (int64_t d : shape) {
        if (d < 0 || (d > 0 && n > kMaxElements / d))
          sane = false;
        else
          n *= d;
      }
      if (sane && static_cast<size_t>(n) * DataTypeSize(*dt) == p->raw_data().size())
        return Tensor::Adopt(*dt, shape, std::unique_ptr<std::string>(p->release_raw_data()));
    }
  }
  return TensorFromProto(*p);
}
}  // namespace

namespace {

// A tensor's shape from its dims, and its element count in *n; `what` names it in errors.
Result<Shape> ShapeOf(const onnx::TensorProto& p, const std::string& what, int64_t* n) {
  Shape shape;
  *n = 1;
  for (int64_t d : p.dims()) {
    if (d < 0) return Status::InvalidArgument(what + " has a negative dimension");
    if (d > 0 && *n > kMaxElements / d)
      return Status::InvalidArgument(what + " is implausibly large");
    *n *= d;
    shape.push_back(d);
  }
  return shape;
}

bool IsExternal(const onnx::TensorProto& p) {
  return p.data_location() == onnx::TensorProto::EXTERNAL || p.external_data_size() > 0;
}

// The files a model's external data lives in (ONNX's external data: each tensor names a
// `location` relative to the model file's directory, an `offset` and a `length` there), opened
// once each. `dir` empty: the model came as bytes, with no directory to resolve against.
class ExternalFiles {
 public:
  explicit ExternalFiles(std::filesystem::path dir) : dir_(std::move(dir)) {}

  Result<Tensor> Read(const onnx::TensorProto& p) {
    const std::string what = "initializer '" + p.name() + "'";
    std::string location;
    int64_t offset = 0, length = -1;
    for (const auto& kv : p.external_data()) {
      auto number = [&](int64_t* out) -> Status {
        char* end = nullptr;
        const long long v = std::strtoll(kv.value().c_str(), &end, 10);
        if (kv.value().empty() || *end != '\0' || v < 0)
          return Status::InvalidArgument(what + ": external data " + kv.key() + " '" + kv.value() +
                                         "' is not a byte count");
        *out = v;
        return Status::OK();
      };
      if (kv.key() == "location") {
        location = kv.value();
      } else if (kv.key() == "offset") {
        TESSERA_RETURN_IF_ERROR(number(&offset));
      } else if (kv.key() == "length") {
        TESSERA_RETURN_IF_ERROR(number(&length));
      }  // "checksum" and unknown keys are not needed to read the bytes
    }
    if (location.empty())
      return Status::InvalidArgument(what + " is marked as external data but names no location");
    if (dir_.empty())
      return Status::InvalidArgument(what + " keeps its data in the file '" + location +
                                     "' beside the model; load the model from its file (a "
                                     "model given as bytes has no directory to find it in)");
    // The ONNX rule (and ONNX Runtime's): a location is relative to the model's directory and
    // stays inside it.
    const std::filesystem::path rel(location);
    if (rel.is_absolute() ||
        std::any_of(rel.begin(), rel.end(), [](const auto& part) { return part == ".."; }))
      return Status::InvalidArgument(what + ": external data location '" + location +
                                     "' must be a path inside the model's directory");
    TESSERA_ASSIGN_OR_RETURN(DataType dt, DataTypeFromOnnx(p.data_type()));
    int64_t n = 1;
    TESSERA_ASSIGN_OR_RETURN(Shape shape, ShapeOf(p, what, &n));
    const int64_t bytes = n * static_cast<int64_t>(DataTypeSize(dt));
    if (length >= 0 && length != bytes)
      return Status::InvalidArgument(what + ": external data length " + std::to_string(length) +
                                     " bytes, expected " + std::to_string(bytes) + " for " +
                                     DataTypeName(dt) + ShapeToString(shape));
    TESSERA_ASSIGN_OR_RETURN(File * f, Open(location, what));
    if (offset > f->size || bytes > f->size - offset)
      return Status::InvalidArgument(what + ": external data at offset " + std::to_string(offset) +
                                     " + " + std::to_string(bytes) +
                                     " bytes runs past the end of '" + location + "' (" +
                                     std::to_string(f->size) + " bytes)");
    Tensor t = Tensor::Allocate(dt, shape);
    if (bytes > 0) {
      f->in.seekg(offset);
      f->in.read(static_cast<char*>(t.raw()), bytes);
      if (!f->in)
        return Status::Internal(what + ": reading " + std::to_string(bytes) + " bytes of '" +
                                location + "' failed");
    }
    return t;
  }

 private:
  struct File {
    std::ifstream in;
    int64_t size = 0;
  };
  Result<File*> Open(const std::string& location, const std::string& what) {
    auto it = files_.find(location);
    if (it != files_.end()) return it->second.get();
    const auto path = dir_ / location;
    auto f = std::make_unique<File>();
    f->in.open(path, std::ios::binary);
    std::error_code ec;
    const auto size = std::filesystem::file_size(path, ec);
    if (!f->in || ec)
      return Status::NotFound(what + ": cannot open its external data file '" + path.string() +
                              "'");
    f->size = static_cast<int64_t>(size);
    return (files_[location] = std::move(f)).get();
  }
  std::filesystem::path dir_;
  std::map<std::string, std::unique_ptr<File>> files_;
};

}  // namespace

Result<Tensor> TensorFromProto(const onnx::TensorProto& p) {
  const std::string what = "initializer '" + p.name() + "'";
  if (IsExternal(p))
    return Status::InvalidArgument(what +
                                   " uses external data, which only a model read from its file "
                                   "can resolve");
  TESSERA_ASSIGN_OR_RETURN(DataType dt, DataTypeFromOnnx(p.data_type()));
  int64_t n = 1;
  TESSERA_ASSIGN_OR_RETURN(Shape shape, ShapeOf(p, what, &n));
  // Sizes are checked against the data actually present before anything is allocated, so a
  // tiny file cannot claim a huge tensor.
  const size_t bytes = static_cast<size_t>(n) * DataTypeSize(dt);
  if (p.has_raw_data()) {
    if (p.raw_data().size() != bytes)
      return Status::InvalidArgument(what + " holds " + std::to_string(p.raw_data().size()) +
                                     " raw bytes, expected " + std::to_string(bytes) + " for " +
                                     DataTypeName(dt) + ShapeToString(shape));
    Tensor t = Tensor::Allocate(dt, shape);
    if (bytes) std::memcpy(t.raw(), p.raw_data().data(), bytes);
    return t;
  }
  auto check = [&](int have) -> Status {
    if (have != n)
      return Status::InvalidArgument(what + " holds " + std::to_string(have) +
                                     " elements, expected " + std::to_string(n) + " for shape " +
                                     ShapeToString(shape));
    return Status::OK();
  };
  const int typed = std::max({p.float_data_size(), p.double_data_size(), p.int64_data_size(),
                              p.uint64_data_size(), p.int32_data_size()});
  TESSERA_RETURN_IF_ERROR(check(typed));
  Tensor t = Tensor::Allocate(dt, shape);
  switch (dt) {
    case DataType::kFloat32:
      TESSERA_RETURN_IF_ERROR(check(p.float_data_size()));
      CopyTyped(p.float_data(), t.data<float>());
      break;
    case DataType::kFloat64:
      TESSERA_RETURN_IF_ERROR(check(p.double_data_size()));
      CopyTyped(p.double_data(), t.data<double>());
      break;
    case DataType::kInt64:
      TESSERA_RETURN_IF_ERROR(check(p.int64_data_size()));
      CopyTyped(p.int64_data(), t.data<int64_t>());
      break;
    case DataType::kUInt64:
    case DataType::kUInt32:
      TESSERA_RETURN_IF_ERROR(check(p.uint64_data_size()));
      if (dt == DataType::kUInt64)
        CopyTyped(p.uint64_data(), t.data<uint64_t>());
      else
        CopyTyped(p.uint64_data(), t.data<uint32_t>());
      break;
    case DataType::kInt32:
      TESSERA_RETURN_IF_ERROR(check(p.int32_data_size()));
      CopyTyped(p.int32_data(), t.data<int32_t>());
      break;
    case DataType::kInt16:
      TESSERA_RETURN_IF_ERROR(check(p.int32_data_size()));
      CopyTyped(p.int32_data(), t.data<int16_t>());
      break;
    case DataType::kInt8:
      TESSERA_RETURN_IF_ERROR(check(p.int32_data_size()));
      CopyTyped(p.int32_data(), t.data<int8_t>());
      break;
    case DataType::kUInt8:
    case DataType::kBool:
      TESSERA_RETURN_IF_ERROR(check(p.int32_data_size()));
      CopyTyped(p.int32_data(), t.data<uint8_t>());
      break;
    case DataType::kUInt16:
    case DataType::kFloat16:
    case DataType::kBFloat16:
      TESSERA_RETURN_IF_ERROR(check(p.int32_data_size()));
      CopyTyped(p.int32_data(), t.data<uint16_t>());
      break;
    default:
      return Status::Unimplemented(what + " has unsupported type");
  }
  return t;
}

void TensorToProto(const Tensor& t, const std::string& name, onnx::TensorProto* p) {
  p->set_name(name);
  p->set_data_type(DataTypeToOnnx(t.dtype()));
  for (int64_t d : t.shape()) p->add_dims(d);
  p->set_raw_data(t.raw(), t.nbytes());
}

namespace {
Result<Graph> ImportParsed(onnx::ModelProto& model, const std::filesystem::path& dir);
}  // namespace

Result<Graph> ImportOnnx(const std::string& bytes) {
  onnx::ModelProto model;
  if (bytes.empty()) return Status::InvalidArgument("ONNX model is empty (0 bytes)");
  if (!model.ParseFromString(bytes))
    return Status::InvalidArgument("ONNX model is malformed or truncated (" +
                                   std::to_string(bytes.size()) +
                                   " bytes did not parse as onnx.ModelProto)");
  return ImportParsed(model, {});
}

namespace {
// `dir`: the model file's directory, where its external data files are (empty for bytes).
Result<Graph> ImportParsed(onnx::ModelProto& model, const std::filesystem::path& dir) {
  if (!model.has_graph()) return Status::InvalidArgument("ONNX model has no graph");
  Graph g;
  for (const auto& op : model.opset_import())
    if (op.domain().empty() || op.domain() == "ai.onnx") g.opset = op.version();
  if (g.opset == 0)
    return Status::InvalidArgument("ONNX model declares no default-domain opset_import");
  if (g.opset < kMinOpset || g.opset > kMaxOpset)
    return Status::Unimplemented("ONNX opset " + std::to_string(g.opset) +
                                 " is not supported; expected " + std::to_string(kMinOpset) + ".." +
                                 std::to_string(kMaxOpset));
  auto& gp = *model.mutable_graph();
  g.name = gp.name();
  ExternalFiles external(dir);
  for (auto& init : *gp.mutable_initializer()) {
    if (init.name().empty()) return Status::InvalidArgument("an initializer has no name");
    auto t = IsExternal(init) ? external.Read(init) : AdoptTensor(&init);
    if (!t.ok()) return t.status();
    g.initializers[init.name()] = std::move(t).value();
  }
  for (const auto& n : gp.node()) {
    if (n.op_type() == "Constant" && n.output_size() == 1) {
      // Constants become initializers at once: simpler for every pass after this.
      bool done = false;
      for (const auto& a : n.attribute()) {
        Tensor t;
        if (a.name() == "value") {
          auto r = IsExternal(a.t()) ? external.Read(a.t()) : TensorFromProto(a.t());
          if (!r.ok()) return r.status().WithContext("Constant node '" + n.name() + "'");
          t = std::move(r).value();
        } else if (a.name() == "value_float") {
          t = Tensor::Allocate(DataType::kFloat32, {});
          *t.data<float>() = a.f();
        } else if (a.name() == "value_int") {
          t = Tensor::Allocate(DataType::kInt64, {});
          *t.data<int64_t>() = a.i();
        } else if (a.name() == "value_floats") {
          t = Tensor::Allocate(DataType::kFloat32, {a.floats_size()});
          CopyTyped(a.floats(), t.data<float>());
        } else if (a.name() == "value_ints") {
          t = Tensor::Allocate(DataType::kInt64, {a.ints_size()});
          CopyTyped(a.ints(), t.data<int64_t>());
        } else {
          continue;
        }
        if (g.initializers.count(n.output(0)))
          return Status::InvalidArgument("value '" + n.output(0) + "' is produced twice");
        g.initializers[n.output(0)] = std::move(t);
        done = true;
        break;
      }
      if (!done)
        return Status::Unimplemented("Constant node '" + n.name() +
                                     "' has no supported value attribute");
      continue;
    }
    if (!n.domain().empty() && n.domain() != "ai.onnx")
      return Status::Unimplemented("op '" + n.op_type() + "' of node '" + n.name() +
                                   "' is in domain '" + n.domain() +
                                   "'; only the default ONNX domain is supported");
    Node node;
    node.op = n.op_type();
    node.name = n.name().empty() ? n.op_type() + "_" + std::to_string(g.nodes.size()) : n.name();
    node.inputs.assign(n.input().begin(), n.input().end());
    node.outputs.assign(n.output().begin(), n.output().end());
    for (const auto& a : n.attribute()) {
      auto at = AttributeFromProto(a);
      if (!at.ok()) return at.status().WithContext(node.Describe());
      node.attrs[a.name()] = std::move(at).value();
    }
    g.nodes.push_back(std::move(node));
  }
  for (const auto& in : gp.input()) {
    if (g.initializers.count(in.name())) continue;  // old exporters list weights as inputs
    auto vi = ValueInfoFromProto(in);
    if (!vi.ok()) return vi.status().WithContext("graph input");
    g.inputs.push_back(std::move(vi).value());
  }
  for (const auto& out : gp.output()) {
    auto vi = ValueInfoFromProto(out);
    if (!vi.ok()) return vi.status().WithContext("graph output");
    g.outputs.push_back(std::move(vi).value());
  }
  if (g.outputs.empty()) return Status::InvalidArgument("ONNX graph has no outputs");
  std::unordered_set<std::string> names;
  for (auto& n : g.nodes)
    if (!names.insert(n.name).second) n.name += "_" + std::to_string(names.size());
  TESSERA_RETURN_IF_ERROR(TopologicalSort(&g));
  return g;
}
}  // namespace

Result<Graph> ImportOnnxFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return Status::NotFound("cannot open ONNX file '" + path + "'");
  onnx::ModelProto model;
  // Parsed straight from the stream: the file's bytes are never held twice.
  if (f.peek() == std::ifstream::traits_type::eof())
    return Status::InvalidArgument(path + ": ONNX model is empty (0 bytes)");
  if (!model.ParseFromIstream(&f))
    return Status::InvalidArgument(path +
                                   ": ONNX model is malformed or truncated (did not "
                                   "parse as onnx.ModelProto)");
  auto g = ImportParsed(model, std::filesystem::path(path).parent_path().empty()
                                   ? std::filesystem::path(".")
                                   : std::filesystem::path(path).parent_path());
  if (!g.ok()) return g.status().WithContext(path);
  return g;
}

}  // namespace tessera
