#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/text_format.h>

#include "model_config.pb.h"
#include "tessera/model/repository.h"

namespace tessera {
namespace {

class CollectErrors : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int line, int column, const std::string& message) override {
    if (text.empty())
      text = "line " + std::to_string(line + 1) + " column " + std::to_string(column + 1) + ": " +
             message;
  }
  void AddWarning(int, int, const std::string&) override {}
  std::string text;
};

DataType FromConfigType(config::DataType t) {
  std::string n = config::DataType_Name(t);
  auto r = DataTypeFromName(n);
  return r.ok() ? *r : DataType::kInvalid;
}

config::DataType ToConfigType(DataType t) {
  config::DataType out = config::TYPE_INVALID;
  config::DataType_Parse(std::string("TYPE_") + DataTypeName(t), &out);
  return out;
}

}  // namespace

Result<ModelConfig> ParseModelConfig(const std::string& text) {
  config::ModelConfig pb;
  google::protobuf::TextFormat::Parser parser;
  CollectErrors errors;
  parser.RecordErrorsTo(&errors);
  parser.AllowUnknownField(true);
  if (!parser.ParseFromString(text, &pb))
    return Status::InvalidArgument("config.pbtxt: " + errors.text);
  ModelConfig c;
  c.name = pb.name();
  c.platform = pb.platform().empty() ? pb.backend() : pb.platform();
  if (pb.max_batch_size() < 0)
    return Status::InvalidArgument("config.pbtxt: max_batch_size must be >= 0");
  c.max_batch_size = pb.max_batch_size();
  if (!pb.default_model_filename().empty()) c.default_model_filename = pb.default_model_filename();
  auto tensors = [](const auto& list, const char* what, std::vector<TensorConfig>* out) -> Status {
    for (const auto& t : list) {
      TensorConfig tc{t.name(), FromConfigType(t.data_type()), {t.dims().begin(), t.dims().end()}};
      if (tc.name.empty())
        return Status::InvalidArgument(std::string("config.pbtxt: an ") + what + " has no name");
      if (tc.dtype == DataType::kInvalid)
        return Status::InvalidArgument(std::string("config.pbtxt: ") + what + " '" + tc.name +
                                       "' has no supported data_type");
      for (int64_t d : tc.dims)
        if (d < -1 || d == 0)
          return Status::InvalidArgument(std::string("config.pbtxt: ") + what + " '" + tc.name +
                                         "' has dim " + std::to_string(d) +
                                         "; expected a positive size or -1");
      out->push_back(std::move(tc));
    }
    return Status::OK();
  };
  TESSERA_RETURN_IF_ERROR(tensors(pb.input(), "input", &c.inputs));
  TESSERA_RETURN_IF_ERROR(tensors(pb.output(), "output", &c.outputs));
  for (const auto& [k, v] : pb.parameters()) c.parameters[k] = v.string_value();
  return c;
}

std::string FormatModelConfig(const ModelConfig& c) {
  config::ModelConfig pb;
  pb.set_name(c.name);
  pb.set_platform(c.platform);
  pb.set_max_batch_size(c.max_batch_size);
  auto fill = [](const std::vector<TensorConfig>& in, auto* out) {
    for (const auto& t : in) {
      auto* m = out->Add();
      m->set_name(t.name);
      m->set_data_type(ToConfigType(t.dtype));
      for (int64_t d : t.dims) m->add_dims(d);
    }
  };
  fill(c.inputs, pb.mutable_input());
  fill(c.outputs, pb.mutable_output());
  for (const auto& [k, v] : c.parameters) (*pb.mutable_parameters())[k].set_string_value(v);
  std::string out;
  google::protobuf::TextFormat::PrintToString(pb, &out);
  return out;
}

ModelConfig DeriveModelConfig(const std::string& name, const Graph& graph, int max_batch_size) {
  ModelConfig c;
  c.name = name;
  c.platform = "onnxruntime_onnx";
  bool batched = max_batch_size > 0;
  for (const auto& in : graph.inputs)
    if (in.dims.empty() || in.dims[0] >= 0) batched = false;
  c.max_batch_size = batched ? max_batch_size : 0;
  auto conv = [&](const std::vector<ValueInfo>& vs, std::vector<TensorConfig>* out) {
    for (const auto& v : vs) {
      TensorConfig t{v.name, v.dtype, {}};
      for (size_t i = batched ? 1 : 0; i < v.dims.size(); ++i) t.dims.push_back(v.dims[i]);
      out->push_back(t);
    }
  };
  conv(graph.inputs, &c.inputs);
  conv(graph.outputs, &c.outputs);
  return c;
}

}  // namespace tessera
