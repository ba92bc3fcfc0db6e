#include "zoo/builder.h"

namespace tessera::zoo {

uint64_t Rng::Next() {
  uint64_t z = (s_ += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

float Rng::Uniform(float lo, float hi) {
  return lo + (hi - lo) * static_cast<float>(Next() >> 40) * (1.0f / 16777216.0f);
}

Attr A(const std::string& name, int64_t v) {
  Attr a;
  a.name = name;
  a.kind = Attr::kInt;
  a.i = v;
  return a;
}
Attr A(const std::string& name, std::vector<int64_t> v) {
  Attr a;
  a.name = name;
  a.kind = Attr::kInts;
  a.ints = std::move(v);
  return a;
}
Attr Af(const std::string& name, float v) {
  Attr a;
  a.name = name;
  a.kind = Attr::kFloat;
  a.f = v;
  return a;
}
Attr As(const std::string& name, std::string v) {
  Attr a;
  a.name = name;
  a.kind = Attr::kString;
  a.s = std::move(v);
  return a;
}

GraphBuilder::GraphBuilder(const std::string& name, uint64_t seed) : rng_(seed) {
  g_ = model_.mutable_graph();
  g_->set_name(name);
}

namespace {
void SetType(onnx::ValueInfoProto* v, int elem_type, const std::vector<int64_t>& dims,
             bool batch_dynamic) {
  auto* tt = v->mutable_type()->mutable_tensor_type();
  tt->set_elem_type(elem_type);
  auto* shape = tt->mutable_shape();
  for (size_t i = 0; i < dims.size(); ++i) {
    auto* d = shape->add_dim();
    if (i == 0 && batch_dynamic)
      d->set_dim_param("batch");
    else
      d->set_dim_value(dims[i]);
  }
}
}  // namespace

std::string GraphBuilder::Input(const std::string& name, int elem_type, std::vector<int64_t> dims,
                                bool batch_dynamic) {
  auto* v = g_->add_input();
  v->set_name(name);
  SetType(v, elem_type, dims, batch_dynamic);
  return name;
}

void GraphBuilder::Output(const std::string& value, int elem_type, std::vector<int64_t> dims,
                          bool batch_dynamic) {
  auto* v = g_->add_output();
  v->set_name(value);
  SetType(v, elem_type, dims, batch_dynamic);
}

std::string GraphBuilder::Weight(const std::string& name, std::vector<int64_t> dims, float lo,
                                 float hi) {
  auto* t = g_->add_initializer();
  t->set_name(name);
  t->set_data_type(onnx::TensorProto::FLOAT);
  int64_t n = 1;
  for (int64_t d : dims) {
    t->add_dims(d);
    n *= d;
  }
  std::string raw(static_cast<size_t>(n) * 4, '\0');
  float* p = reinterpret_cast<float*>(raw.data());
  for (int64_t i = 0; i < n; ++i) p[i] = rng_.Uniform(lo, hi);
  t->set_raw_data(std::move(raw));
  return name;
}

std::string GraphBuilder::ConstInts(const std::string& name, std::vector<int64_t> values,
                                    std::vector<int64_t> dims) {
  auto* t = g_->add_initializer();
  t->set_name(name);
  t->set_data_type(onnx::TensorProto::INT64);
  if (dims.size() == 1 && dims[0] == -1) dims[0] = static_cast<int64_t>(values.size());
  for (int64_t d : dims) t->add_dims(d);
  for (int64_t v : values) t->add_int64_data(v);
  return name;
}

std::string GraphBuilder::ConstFloat(const std::string& name, float value) {
  auto* t = g_->add_initializer();
  t->set_name(name);
  t->set_data_type(onnx::TensorProto::FLOAT);
  t->add_float_data(value);
  return name;
}

std::string GraphBuilder::Unique(const std::string& base) {
  return base + "_" + std::to_string(counter_++);
}

std::string GraphBuilder::Op(const std::string& op, std::vector<std::string> inputs,
                             std::initializer_list<Attr> attrs, const std::string& name,
                             int outputs) {
  auto* n = g_->add_node();
  n->set_op_type(op);
  n->set_name(name.empty() ? Unique(op) : name);
  for (auto& i : inputs) n->add_input(i);
  for (int k = 0; k < outputs; ++k)
    n->add_output(n->name() + (k ? "_out" + std::to_string(k) : "_out"));
  for (const auto& a : attrs) {
    auto* p = n->add_attribute();
    p->set_name(a.name);
    switch (a.kind) {
      case Attr::kInt:
        p->set_type(onnx::AttributeProto::INT);
        p->set_i(a.i);
        break;
      case Attr::kInts:
        p->set_type(onnx::AttributeProto::INTS);
        for (auto v : a.ints) p->add_ints(v);
        break;
      case Attr::kFloat:
        p->set_type(onnx::AttributeProto::FLOAT);
        p->set_f(a.f);
        break;
      case Attr::kString:
        p->set_type(onnx::AttributeProto::STRING);
        p->set_s(a.s);
        break;
    }
  }
  return n->output(0);
}

onnx::ModelProto GraphBuilder::Finish(int opset) {
  model_.set_ir_version(8);
  model_.set_producer_name("tessera-zoo");
  auto* op = model_.add_opset_import();
  op->set_domain("");
  op->set_version(opset);
  return model_;
}

}  // namespace tessera::zoo
