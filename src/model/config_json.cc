// The model config as JSON, shaped like Triton's HTTP config responses: every scalar and list
// field printed (defaults included), set sub-messages only, enums by name, maps as objects and
// 64-bit integers as JSON numbers (protobuf's own JSON printer writes them as strings).
#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>

#include <nlohmann/json.hpp>

#include "model_config.pb.h"
#include "tessera/model/config.h"

namespace tessera {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using json = nlohmann::json;

json ToJson(const Message& m);

json Scalar(const Message& m, const FieldDescriptor* f, int index) {
  const auto* r = m.GetReflection();
  const bool rep = f->is_repeated();
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32:
      return rep ? r->GetRepeatedInt32(m, f, index) : r->GetInt32(m, f);
    case FieldDescriptor::CPPTYPE_INT64:
      return rep ? r->GetRepeatedInt64(m, f, index) : r->GetInt64(m, f);
    case FieldDescriptor::CPPTYPE_UINT32:
      return rep ? r->GetRepeatedUInt32(m, f, index) : r->GetUInt32(m, f);
    case FieldDescriptor::CPPTYPE_UINT64:
      return rep ? r->GetRepeatedUInt64(m, f, index) : r->GetUInt64(m, f);
    case FieldDescriptor::CPPTYPE_DOUBLE:
      return rep ? r->GetRepeatedDouble(m, f, index) : r->GetDouble(m, f);
    case FieldDescriptor::CPPTYPE_FLOAT:
      return rep ? r->GetRepeatedFloat(m, f, index) : r->GetFloat(m, f);
    case FieldDescriptor::CPPTYPE_BOOL:
      return rep ? r->GetRepeatedBool(m, f, index) : r->GetBool(m, f);
    case FieldDescriptor::CPPTYPE_ENUM:
      return (rep ? r->GetRepeatedEnum(m, f, index) : r->GetEnum(m, f))->name();
    case FieldDescriptor::CPPTYPE_STRING:
      return rep ? r->GetRepeatedString(m, f, index) : r->GetString(m, f);
    case FieldDescriptor::CPPTYPE_MESSAGE:
      return ToJson(rep ? r->GetRepeatedMessage(m, f, index) : r->GetMessage(m, f));
  }
  return nullptr;
}

std::string MapKey(const Message& entry) {
  const auto* kf = entry.GetDescriptor()->FindFieldByName("key");
  json k = Scalar(entry, kf, -1);
  return k.is_string() ? k.get<std::string>() : k.dump();
}

json ToJson(const Message& m) {
  json j = json::object();
  const auto* d = m.GetDescriptor();
  const auto* r = m.GetReflection();
  for (int i = 0; i < d->field_count(); ++i) {
    const FieldDescriptor* f = d->field(i);
    if (f->is_map()) {
      json obj = json::object();
      const auto* vf = f->message_type()->FindFieldByName("value");
      for (int k = 0; k < r->FieldSize(m, f); ++k) {
        const Message& e = r->GetRepeatedMessage(m, f, k);
        obj[MapKey(e)] = Scalar(e, vf, -1);
      }
      j[f->name()] = obj;
    } else if (f->is_repeated()) {
      json arr = json::array();
      for (int k = 0; k < r->FieldSize(m, f); ++k) arr.push_back(Scalar(m, f, k));
      j[f->name()] = arr;
    } else if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE || f->containing_oneof()) {
      if (r->HasField(m, f)) j[f->name()] = Scalar(m, f, -1);
    } else {
      j[f->name()] = Scalar(m, f, -1);
    }
  }
  return j;
}

}  // namespace

std::string ModelConfigJson(const ModelConfig& config) {
  tessera::config::ModelConfig m;
  m.ParseFromString(ModelConfigProtoBytes(config));
  // Strings in a config need not be UTF-8 ("\\377" parses): replace what JSON cannot carry.
  return ToJson(m).dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace tessera
