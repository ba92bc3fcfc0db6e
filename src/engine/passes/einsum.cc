// Einsum as the ops Tessera runs (see passes.h): with the operands' shapes known, one or two
// operands become ReduceSum over the letters only one side has, Transposes that group each
// operand's letters as [batch..., free..., contracted...], Reshapes to [batch..., M, K] and
// [batch..., K, N], one MatMul (batch dims broadcast as MatMul does), a Reshape back and a
// Transpose into the output's order. Both backends then run it as they run those ops.
#include <algorithm>
#include <cctype>
#include <map>
#include <set>

#include "engine/passes/passes.h"

namespace tessera::passes {
namespace {

struct Operand {
  std::string letters;  // one char per dim, ellipsis expanded
  Shape shape;
  std::string value;
};

// The equation's terms with spaces removed and "..." replaced by letters of its own (the
// broadcast dims, aligned right across operands); `implicit` when it has no "->".
struct Parsed {
  std::vector<std::string> inputs;
  std::string output;
};

Result<Parsed> Parse(const Node& n, const std::vector<const ops::ValueMeta*>& in) {
  std::string eq;
  for (char c : n.GetString("equation", "")) {
    if (c != ' ') eq += c;
  }
  if (eq.empty()) return Status::InvalidArgument(n.Describe() + ": no equation");
  const auto arrow = eq.find("->");
  const bool implicit = arrow == std::string::npos;
  const std::string lhs = implicit ? eq : eq.substr(0, arrow);
  Parsed p;
  size_t start = 0;
  while (true) {
    const size_t comma = lhs.find(',', start);
    p.inputs.push_back(lhs.substr(start, comma == std::string::npos ? comma : comma - start));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  if (p.inputs.size() != in.size())
    return Status::InvalidArgument(n.Describe() + ": the equation '" + eq + "' has " +
                                   std::to_string(p.inputs.size()) + " operands, the node " +
                                   std::to_string(in.size()) + " inputs");
  // Letters the ellipsis stands for: characters no term uses.
  std::set<char> used(eq.begin(), eq.end());
  std::string spare;
  for (char c = '0'; c <= '9'; ++c)
    if (!used.count(c)) spare += c;
  for (const char* extra = "!#$%&*+:;<=>?@^_~"; *extra; ++extra) spare += *extra;
  size_t ell_rank = 0;
  std::vector<int64_t> ell_of(p.inputs.size(), -1);
  for (size_t k = 0; k < p.inputs.size(); ++k) {
    std::string& t = p.inputs[k];
    const auto e = t.find("...");
    const size_t named = t.size() - (e == std::string::npos ? 0 : 3);
    for (char c : t)
      if (c != '.' && !std::isalpha(static_cast<unsigned char>(c)))
        return Status::InvalidArgument(n.Describe() + ": '" + std::string(1, c) +
                                       "' in the equation '" + eq + "' is not a letter");
    const size_t rank = in[k]->shape.size();
    if (e == std::string::npos ? named != rank : named > rank)
      return Status::InvalidArgument(n.Describe() + ": operand " + std::to_string(k) + " ('" + t +
                                     ") has rank " + std::to_string(rank));
    if (e != std::string::npos) {
      ell_of[k] = static_cast<int64_t>(rank - named);
      ell_rank = std::max(ell_rank, rank - named);
    }
  }
  if (ell_rank > spare.size())
    return Status::Unimplemented(n.Describe() + ": an ellipsis of " + std::to_string(ell_rank) +
                                 " dims");
  const std::string ell_all = spare.substr(0, ell_rank);
  for (size_t k = 0; k < p.inputs.size(); ++k)
    if (ell_of[k] >= 0) {
      std::string& t = p.inputs[k];
      t.replace(t.find("..."), 3, ell_all.substr(ell_rank - static_cast<size_t>(ell_of[k])));
    }
  if (implicit) {
    // The output: the ellipsis dims, then the letters seen once, in alphabetical order.
    std::map<char, int> count;
    for (const auto& t : p.inputs)
      for (char c : t) ++count[c];
    p.output = ell_all;
    for (const auto& [c, times] : count)
      if (times == 1 && ell_all.find(c) == std::string::npos) p.output += c;
  } else {
    p.output = eq.substr(arrow + 2);
    if (const auto e = p.output.find("..."); e != std::string::npos)
      p.output.replace(e, 3, ell_all);
  }
  for (const auto& t : p.inputs) {
    std::set<char> seen;
    for (char c : t)
      if (!seen.insert(c).second)
        return Status::Unimplemented(n.Describe() + ": a letter repeated within one operand ('" +
                                     eq + "': a diagonal)");
  }
  for (char c : p.output)
    if (std::none_of(p.inputs.begin(), p.inputs.end(),
                     [c](const std::string& t) { return t.find(c) != std::string::npos; }))
      return Status::InvalidArgument(n.Describe() + ": output letter '" + std::string(1, c) +
                                     "' of '" + eq + "' is in no operand");
  return p;
}

class Builder {
 public:
  Builder(const Node& n, Graph* g) : n_(n), g_(g) {}
  std::vector<Node> nodes;

  // A new value name; the Einsum's own output for the last step.
  std::string Value() { return n_.name + "/einsum_" + std::to_string(next_++); }

  std::string Transpose(Operand* o, const std::string& order) {
    if (o->letters == order) return o->value;
    std::vector<int64_t> perm;
    Shape shape;
    for (char c : order) {
      const auto at = static_cast<int64_t>(o->letters.find(c));
      perm.push_back(at);
      shape.push_back(o->shape[static_cast<size_t>(at)]);
    }
    Node t = Make("Transpose", {o->value});
    t.SetInts("perm", perm);
    o->letters = order;
    o->shape = shape;
    return o->value = Add(std::move(t));
  }
  std::string Reshape(const std::string& v, const Shape& to) {
    Tensor s = Tensor::Allocate(DataType::kInt64, {static_cast<int64_t>(to.size())});
    std::copy(to.begin(), to.end(), s.data<int64_t>());
    return Add(Make("Reshape", {v, Constant(std::move(s))}));
  }
  void ReduceSum(Operand* o, const std::string& keep) {
    std::vector<int64_t> axes;
    std::string letters;
    Shape shape;
    for (size_t i = 0; i < o->letters.size(); ++i) {
      if (keep.find(o->letters[i]) == std::string::npos) {
        axes.push_back(static_cast<int64_t>(i));
      } else {
        letters += o->letters[i];
        shape.push_back(o->shape[i]);
      }
    }
    if (axes.empty()) return;
    Tensor a = Tensor::Allocate(DataType::kInt64, {static_cast<int64_t>(axes.size())});
    std::copy(axes.begin(), axes.end(), a.data<int64_t>());
    Node r = Make("ReduceSum", {o->value, Constant(std::move(a))});
    r.SetInt("keepdims", 0);
    o->value = Add(std::move(r));
    o->letters = letters;
    o->shape = shape;
  }
  std::string MatMul(const std::string& a, const std::string& b) {
    return Add(Make("MatMul", {a, b}));
  }
  // The last node writes the Einsum's output instead of a value of its own.
  void Finish(const std::string& v) {
    if (!nodes.empty() && nodes.back().outputs[0] == v) {
      nodes.back().outputs[0] = n_.outputs[0];
      return;
    }
    Node id = Make("Identity", {v});
    id.outputs = {n_.outputs[0]};
    nodes.push_back(std::move(id));
  }

 private:
  Node Make(const std::string& op, std::vector<std::string> inputs) {
    Node x;
    x.op = op;
    x.name = n_.name + "/einsum_" + op + "_" + std::to_string(nodes.size());
    x.inputs = std::move(inputs);
    return x;
  }
  std::string Add(Node x) {
    x.outputs = {Value()};
    nodes.push_back(std::move(x));
    return nodes.back().outputs[0];
  }
  std::string Constant(Tensor t) {
    const std::string name = Value();
    g_->initializers[name] = std::move(t);
    return name;
  }
  const Node& n_;
  Graph* g_;
  int next_ = 0;
};

int64_t Product(const Shape& s, size_t from, size_t to) {
  int64_t p = 1;
  for (size_t i = from; i < to; ++i) p *= s[i];
  return p;
}

}  // namespace

Result<std::vector<Node>> DecomposeEinsum(const Node& n,
                                          const std::vector<const ops::ValueMeta*>& in, Graph* g) {
  if (in.empty() || in.size() > 2)
    return Status::Unimplemented(n.Describe() + ": Einsum of " + std::to_string(in.size()) +
                                 " operands (one or two are supported)");
  for (const auto* m : in)
    if (!m || m->dtype != DataType::kFloat32)
      return Status::Unimplemented(n.Describe() + ": Einsum of FP32 operands only");
  TESSERA_ASSIGN_OR_RETURN(Parsed p, Parse(n, in));
  Builder b(n, g);
  std::vector<Operand> ops;
  for (size_t k = 0; k < in.size(); ++k) ops.push_back({p.inputs[k], in[k]->shape, n.inputs[k]});
  // Letters only one operand has and the output lacks are summed away first.
  for (size_t k = 0; k < ops.size(); ++k) {
    std::string keep = p.output;
    if (ops.size() == 2) keep += ops[1 - k].letters;
    b.ReduceSum(&ops[k], keep);
  }
  if (ops.size() == 1) {
    b.Finish(b.Transpose(&ops[0], p.output));
    return std::move(b.nodes);
  }
  Operand &x = ops[0], &y = ops[1];
  std::string batch, free_x, free_y, contracted;
  for (char c : p.output) {
    const bool in_x = x.letters.find(c) != std::string::npos;
    const bool in_y = y.letters.find(c) != std::string::npos;
    (in_x && in_y ? batch : in_x ? free_x : free_y) += c;
  }
  for (char c : x.letters)
    if (y.letters.find(c) != std::string::npos && p.output.find(c) == std::string::npos)
      contracted += c;
  auto dim = [](const Operand& o, char c) { return o.shape[o.letters.find(c)]; };
  for (char c : contracted)
    if (dim(x, c) != dim(y, c))
      return Status::InvalidArgument(n.Describe() + ": letter '" + std::string(1, c) + "' is " +
                                     std::to_string(dim(x, c)) + " in one operand and " +
                                     std::to_string(dim(y, c)) + " in the other");
  for (char c : batch)
    if (dim(x, c) != dim(y, c) && dim(x, c) != 1 && dim(y, c) != 1)
      return Status::InvalidArgument(n.Describe() + ": letter '" + std::string(1, c) + "' is " +
                                     std::to_string(dim(x, c)) + " in one operand and " +
                                     std::to_string(dim(y, c)) + " in the other");
  b.Transpose(&x, batch + free_x + contracted);
  b.Transpose(&y, batch + contracted + free_y);
  const size_t nb = batch.size();
  Shape xs(x.shape.begin(), x.shape.begin() + static_cast<int64_t>(nb));
  Shape ys(y.shape.begin(), y.shape.begin() + static_cast<int64_t>(nb));
  const int64_t m = Product(x.shape, nb, nb + free_x.size());
  const int64_t k = Product(x.shape, nb + free_x.size(), x.shape.size());
  const int64_t nn = Product(y.shape, nb + contracted.size(), y.shape.size());
  Shape x3 = xs, y3 = ys;
  x3.insert(x3.end(), {m, k});
  y3.insert(y3.end(), {k, nn});
  const std::string xv = x3 == x.shape ? x.value : b.Reshape(x.value, x3);
  const std::string yv = y3 == y.shape ? y.value : b.Reshape(y.value, y3);
  std::string v = b.MatMul(xv, yv);
  Operand r;
  r.letters = batch + free_x + free_y;
  for (size_t i = 0; i < nb; ++i) r.shape.push_back(std::max(xs[i], ys[i]));
  for (size_t i = nb; i < nb + free_x.size(); ++i) r.shape.push_back(x.shape[i]);
  for (size_t i = nb + contracted.size(); i < y.shape.size(); ++i) r.shape.push_back(y.shape[i]);
  Shape mm(r.shape.begin(), r.shape.begin() + static_cast<int64_t>(nb));
  mm.insert(mm.end(), {m, nn});
  r.value = mm == r.shape ? v : b.Reshape(v, r.shape);
  b.Finish(b.Transpose(&r, p.output));
  return std::move(b.nodes);
}

}  // namespace tessera::passes
