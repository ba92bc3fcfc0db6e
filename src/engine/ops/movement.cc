// Data movement and shape ops: Reshape family, Transpose, Concat, Split, Slice, Gather, Expand,
// Pad, Tile, Shape, ConstantOfShape, Range. Dtype-agnostic: they move bytes.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "engine/ops/dispatch.h"
#include "engine/ops/nn.h"
#include "engine/ops/ops.h"

namespace tessera::ops {
namespace {

using Metas = std::vector<const ValueMeta*>;
using Outs = std::vector<ValueMeta>;
using Ins = std::vector<const Tensor*>;

Status CopyKernel(const Node&, const Ins& in, std::vector<Tensor>& out) {
  if (out[0].raw() != in[0]->raw() && in[0]->nbytes())
    std::memcpy(out[0].raw(), in[0]->raw(), in[0]->nbytes());
  return Status::OK();
}

void RegisterAlias(const std::string& op,
                   std::function<Result<Shape>(const Node&, const Metas&)> f) {
  OpDef d;
  d.alias = true;
  d.infer = [f](const Node& n, const Metas& in, Outs* out) -> Status {
    TESSERA_RETURN_IF_ERROR(CheckInputs(n, in, 1));
    auto s = f(n, in);
    if (!s.ok()) return s.status();
    if (NumElements(*s) != NumElements(in[0]->shape))
      return Status::InvalidArgument(n.Describe() + ": cannot reshape " +
                                     ShapeToString(in[0]->shape) + " to " + ShapeToString(*s));
    (*out)[0] = {in[0]->dtype, *s, nullptr};
    return Status::OK();
  };
  d.kernel = CopyKernel;
  Register(op, d);
}

Result<std::vector<int64_t>> AxesFromAttrOrInput(const Node& n, const Metas& in, size_t idx) {
  if (n.Has("axes")) return n.GetInts("axes");
  if (idx < in.size() && in[idx]) return ConstInts(n, in, idx);
  return std::vector<int64_t>{};
}

// Copies `rows` blocks: a generic strided N-d gather used by Transpose / Slice.
// out[i] = in[base + sum(idx_k * stride_k)] over out dims, with the last dim contiguous of
// `elem` bytes times `inner_elems` when inner stride equals 1.
void StridedCopy(const uint8_t* src, uint8_t* dst, const Shape& out_shape,
                 const std::vector<int64_t>& in_strides, int64_t base, size_t es) {
  const size_t r = out_shape.size();
  const int64_t total = NumElements(out_shape);
  if (total == 0) return;
  if (r == 0) {
    std::memcpy(dst, src + base * es, es);
    return;
  }
  const int64_t inner = out_shape[r - 1];
  const int64_t rows = total / inner;
  const int64_t is = in_strides[r - 1];
#pragma omp parallel for if (WorthParallel(total)) schedule(static)
  for (int64_t row = 0; row < rows; ++row) {
    int64_t off = base, rem = row;
    for (size_t i = r - 1; i-- > 0;) {
      off += (rem % out_shape[i]) * in_strides[i];
      rem /= out_shape[i];
    }
    uint8_t* d = dst + row * inner * es;
    if (is == 1) {
      std::memcpy(d, src + off * es, inner * es);
    } else if (es == 4) {
      const uint32_t* s4 = reinterpret_cast<const uint32_t*>(src) + off;
      uint32_t* d4 = reinterpret_cast<uint32_t*>(d);
      for (int64_t j = 0; j < inner; ++j) d4[j] = s4[j * is];
    } else {
      for (int64_t j = 0; j < inner; ++j) std::memcpy(d + j * es, src + (off + j * is) * es, es);
    }
  }
}

}  // namespace

std::vector<int64_t> ContiguousStrides(const Shape& s) {
  std::vector<int64_t> st(s.size(), 1);
  for (size_t i = s.size(); i-- > 1;) st[i - 1] = st[i] * s[i];
  return st;
}

Result<SliceSpec> ComputeSlice(const Node& n, const Metas& in) {
  const Shape& s = in[0]->shape;
  const int64_t r = static_cast<int64_t>(s.size());
  std::vector<int64_t> starts, ends, axes, steps;
  if (n.Has("starts")) {  // opset < 10
    starts = n.GetInts("starts");
    ends = n.GetInts("ends");
    axes = n.GetInts("axes");
  } else {
    TESSERA_ASSIGN_OR_RETURN(starts, ConstInts(n, in, 1));
    TESSERA_ASSIGN_OR_RETURN(ends, ConstInts(n, in, 2));
    if (in.size() > 3 && in[3]) {
      TESSERA_ASSIGN_OR_RETURN(axes, ConstInts(n, in, 3));
    }
    if (in.size() > 4 && in[4]) {
      TESSERA_ASSIGN_OR_RETURN(steps, ConstInts(n, in, 4));
    }
  }
  if (axes.empty())
    for (size_t i = 0; i < starts.size(); ++i) axes.push_back(static_cast<int64_t>(i));
  if (steps.empty()) steps.assign(starts.size(), 1);
  if (ends.size() != starts.size() || axes.size() != starts.size() || steps.size() != starts.size())
    return Status::InvalidArgument(n.Describe() + ": starts/ends/axes/steps lengths differ");
  SliceSpec sp{s, std::vector<int64_t>(r, 0), std::vector<int64_t>(r, 1)};
  for (size_t k = 0; k < starts.size(); ++k) {
    int64_t a = NormalizeAxis(axes[k], r);
    if (a < 0 || a >= r) return Status::InvalidArgument(n.Describe() + ": axis out of range");
    int64_t d = s[a], st = steps[k];
    if (st == 0) return Status::InvalidArgument(n.Describe() + ": step 0");
    int64_t b = starts[k], e = ends[k];
    if (b < 0) b += d;
    if (e < 0) e += d;
    if (st > 0) {
      b = std::clamp<int64_t>(b, 0, d);
      e = std::clamp<int64_t>(e, 0, d);
      sp.out[a] = e > b ? (e - b + st - 1) / st : 0;
    } else {
      b = std::clamp<int64_t>(b, 0, d - 1);
      e = std::clamp<int64_t>(e, -1, d - 1);
      sp.out[a] = b > e ? (b - e - st - 1) / (-st) : 0;
    }
    sp.start[a] = b;
    sp.step[a] = st;
  }
  return sp;
}

Result<std::vector<int64_t>> SplitSizes(const Node& n, const Metas& in, size_t outputs) {
  const Shape& s = in[0]->shape;
  int64_t axis = NormalizeAxis(n.GetInt("axis", 0), static_cast<int64_t>(s.size()));
  if (axis < 0 || axis >= static_cast<int64_t>(s.size()))
    return Status::InvalidArgument(n.Describe() + ": axis out of range");
  std::vector<int64_t> sizes;
  if (n.Has("split"))
    sizes = n.GetInts("split");
  else if (in.size() > 1 && in[1]) {
    TESSERA_ASSIGN_OR_RETURN(sizes, ConstInts(n, in, 1));
  }
  if (sizes.empty()) {
    int64_t d = s[axis], k = static_cast<int64_t>(outputs), each = (d + k - 1) / k;
    for (int64_t i = 0; i < k; ++i) sizes.push_back(std::min(each, d - i * each));
  }
  int64_t sum = 0;
  for (auto v : sizes) sum += v;
  if (sum != s[axis] || sizes.size() != outputs)
    return Status::InvalidArgument(n.Describe() + ": split sizes do not match axis " +
                                   std::to_string(axis) + " of " + ShapeToString(s));
  return sizes;
}

void RegisterMovement() {
  RegisterAlias("Identity",
                [](const Node&, const Metas& in) -> Result<Shape> { return in[0]->shape; });
  RegisterAlias("Dropout",
                [](const Node&, const Metas& in) -> Result<Shape> { return in[0]->shape; });
  RegisterAlias("Reshape", [](const Node& n, const Metas& in) -> Result<Shape> {
    std::vector<int64_t> target;
    if (n.Has("shape"))
      target = n.GetInts("shape");
    else {
      TESSERA_ASSIGN_OR_RETURN(target, ConstInts(n, in, 1));
    }
    const Shape& s = in[0]->shape;
    bool allowzero = n.GetInt("allowzero", 0) != 0;
    Shape out(target.size());
    int64_t known = 1, infer = -1;
    for (size_t i = 0; i < target.size(); ++i) {
      int64_t v = target[i];
      if (v == 0 && !allowzero) {
        if (i >= s.size())
          return Status::InvalidArgument(n.Describe() + ": 0 copies a missing dim");
        v = s[i];
      }
      if (v == -1) {
        if (infer >= 0)
          return Status::InvalidArgument(n.Describe() + ": more than one -1 in shape");
        infer = static_cast<int64_t>(i);
        continue;
      }
      if (v < 0) return Status::InvalidArgument(n.Describe() + ": negative dim in target shape");
      out[i] = v;
      known *= v;
    }
    if (infer >= 0) {
      if (known == 0 || NumElements(s) % known)
        return Status::InvalidArgument(n.Describe() + ": cannot infer -1 reshaping " +
                                       ShapeToString(s) + " to " + ShapeToString(Shape(target)));
      out[infer] = NumElements(s) / known;
    }
    return out;
  });
  RegisterAlias("Flatten", [](const Node& n, const Metas& in) -> Result<Shape> {
    const Shape& s = in[0]->shape;
    int64_t axis = NormalizeAxis(n.GetInt("axis", 1), static_cast<int64_t>(s.size()));
    if (axis < 0 || axis > static_cast<int64_t>(s.size()))
      return Status::InvalidArgument(n.Describe() + ": axis out of range");
    int64_t a = 1, b = 1;
    for (int64_t i = 0; i < static_cast<int64_t>(s.size()); ++i) (i < axis ? a : b) *= s[i];
    return Shape{a, b};
  });
  RegisterAlias("Squeeze", [](const Node& n, const Metas& in) -> Result<Shape> {
    TESSERA_ASSIGN_OR_RETURN(auto axes, AxesFromAttrOrInput(n, in, 1));
    const Shape& s = in[0]->shape;
    int64_t r = static_cast<int64_t>(s.size());
    std::vector<bool> drop(r, false);
    if (axes.empty()) {
      for (int64_t i = 0; i < r; ++i) drop[i] = s[i] == 1;
    } else {
      for (auto a : axes) {
        a = NormalizeAxis(a, r);
        if (a < 0 || a >= r || s[a] != 1)
          return Status::InvalidArgument(n.Describe() + ": cannot squeeze axis " +
                                         std::to_string(a) + " of " + ShapeToString(s));
        drop[a] = true;
      }
    }
    Shape out;
    for (int64_t i = 0; i < r; ++i)
      if (!drop[i]) out.push_back(s[i]);
    return out;
  });
  RegisterAlias("Unsqueeze", [](const Node& n, const Metas& in) -> Result<Shape> {
    TESSERA_ASSIGN_OR_RETURN(auto axes, AxesFromAttrOrInput(n, in, 1));
    const Shape& s = in[0]->shape;
    int64_t r = static_cast<int64_t>(s.size() + axes.size());
    std::vector<bool> ins(r, false);
    for (auto a : axes) {
      a = NormalizeAxis(a, r);
      if (a < 0 || a >= r || ins[a])
        return Status::InvalidArgument(n.Describe() + ": bad unsqueeze axis");
      ins[a] = true;
    }
    Shape out;
    size_t k = 0;
    for (int64_t i = 0; i < r; ++i) out.push_back(ins[i] ? 1 : s[k++]);
    return out;
  });

  {  // Transpose
    OpDef d;
    d.infer = [](const Node& n, const Metas& in, Outs* out) -> Status {
      TESSERA_RETURN_IF_ERROR(CheckInputs(n, in, 1));
      const Shape& s = in[0]->shape;
      auto perm = n.GetInts("perm");
      if (perm.empty())
        for (size_t i = s.size(); i-- > 0;) perm.push_back(static_cast<int64_t>(i));
      if (perm.size() != s.size())
        return Status::InvalidArgument(n.Describe() + ": perm length != rank");
      Shape o(s.size());
      std::vector<bool> seen(s.size(), false);
      for (size_t i = 0; i < perm.size(); ++i) {
        int64_t p = NormalizeAxis(perm[i], static_cast<int64_t>(s.size()));
        if (p < 0 || p >= static_cast<int64_t>(s.size()) || seen[p])
          return Status::InvalidArgument(n.Describe() + ": perm is not a permutation");
        seen[p] = true;
        o[i] = s[p];
      }
      (*out)[0] = {in[0]->dtype, o, nullptr};
      return Status::OK();
    };
    d.kernel = [](const Node& n, const Ins& in, std::vector<Tensor>& out) {
      const Shape& s = in[0]->shape();
      auto perm = n.GetInts("perm");
      if (perm.empty())
        for (size_t i = s.size(); i-- > 0;) perm.push_back(static_cast<int64_t>(i));
      auto st = ContiguousStrides(s);
      std::vector<int64_t> ps(perm.size());
      for (size_t i = 0; i < perm.size(); ++i) ps[i] = st[NormalizeAxis(perm[i], s.size())];
      StridedCopy(in[0]->data<uint8_t>(), out[0].data<uint8_t>(), out[0].shape(), ps, 0,
                  DataTypeSize(in[0]->dtype()));
      return Status::OK();
    };
    Register("Transpose", d);
  }

  {  // Concat
    OpDef d;
    d.infer = [](const Node& n, const Metas& in, Outs* out) -> Status {
      TESSERA_RETURN_IF_ERROR(CheckInputs(n, in, 1));
      Shape o = in[0]->shape;
      int64_t r = static_cast<int64_t>(o.size());
      int64_t axis = NormalizeAxis(n.GetInt("axis", 0), r);
      if (axis < 0 || axis >= r)
        return Status::InvalidArgument(n.Describe() + ": axis out of range");
      for (size_t k = 1; k < in.size(); ++k) {
        const Shape& s = in[k]->shape;
        if (static_cast<int64_t>(s.size()) != r || in[k]->dtype != in[0]->dtype)
          return Status::InvalidArgument(n.Describe() + ": inputs differ in rank or type");
        for (int64_t i = 0; i < r; ++i)
          if (i != axis && s[i] != o[i])
            return Status::InvalidArgument(n.Describe() + ": input " + std::to_string(k) + " " +
                                           ShapeToString(s) + " does not match " +
                                           ShapeToString(in[0]->shape) + " off axis " +
                                           std::to_string(axis));
        o[axis] += s[axis];
      }
      (*out)[0] = {in[0]->dtype, o, nullptr};
      return Status::OK();
    };
    d.kernel = [](const Node& n, const Ins& in, std::vector<Tensor>& out) {
      const Shape& o = out[0].shape();
      int64_t axis = NormalizeAxis(n.GetInt("axis", 0), o.size());
      int64_t outer = 1;
      for (int64_t i = 0; i < axis; ++i) outer *= o[i];
      const size_t es = DataTypeSize(out[0].dtype());
      const size_t orow = out[0].nbytes() / (outer ? outer : 1);
      size_t col = 0;
      for (const Tensor* t : in) {
        const size_t row = outer ? t->nbytes() / outer : 0;
        for (int64_t j = 0; j < outer; ++j)
          std::memcpy(out[0].data<uint8_t>() + j * orow + col, t->data<uint8_t>() + j * row, row);
        col += row;
      }
      (void)es;
      return Status::OK();
    };
    Register("Concat", d);
  }

  {  // Split
    OpDef d;
    d.infer = [](const Node& n, const Metas& in, Outs* out) -> Status {
      TESSERA_RETURN_IF_ERROR(CheckInputs(n, in, 1));
      TESSERA_ASSIGN_OR_RETURN(auto sizes, SplitSizes(n, in, out->size()));
      int64_t axis = NormalizeAxis(n.GetInt("axis", 0), in[0]->shape.size());
      for (size_t k = 0; k < out->size(); ++k) {
        Shape s = in[0]->shape;
        s[axis] = sizes[k];
        (*out)[k] = {in[0]->dtype, s, nullptr};
      }
      return Status::OK();
    };
    d.kernel = [](const Node& n, const Ins& in, std::vector<Tensor>& out) {
      const Shape& s = in[0]->shape();
      int64_t axis = NormalizeAxis(n.GetInt("axis", 0), s.size());
      int64_t outer = 1;
      for (int64_t i = 0; i < axis; ++i) outer *= s[i];
      const size_t irow = outer ? in[0]->nbytes() / outer : 0;
      size_t col = 0;
      for (auto& t : out) {
        const size_t row = outer ? t.nbytes() / outer : 0;
        for (int64_t j = 0; j < outer; ++j)
          std::memcpy(t.data<uint8_t>() + j * row, in[0]->data<uint8_t>() + j * irow + col, row);
        col += row;
      }
      return Status::OK();
    };
    Register("Split", d);
  }

  {  // Slice
    OpDef d;
    d.infer = [](const Node& n, const Metas& in, Outs* out) -> Status {
      TESSERA_RETURN_IF_ERROR(CheckInputs(n, in, 1));
      TESSERA_ASSIGN_OR_RETURN(auto sp, ComputeSlice(n, in));
      (*out)[0] = {in[0]->dtype, sp.out, nullptr};
      return Status::OK();
    };
    d.kernel = [](const Node& n, const Ins& in, std::vector<Tensor>& out) -> Status {
      // Rebuild metas from concrete tensors (constants are present at run time).
      std::vector<ValueMeta> m;
      Metas mp = MetasOf(in, &m);
      TESSERA_ASSIGN_OR_RETURN(auto sp, ComputeSlice(n, mp));
      auto st = ContiguousStrides(in[0]->shape());
      int64_t base = 0;
      std::vector<int64_t> strides(st.size());
      for (size_t i = 0; i < st.size(); ++i) {
        base += sp.start[i] * st[i];
        strides[i] = sp.step[i] * st[i];
      }
      StridedCopy(in[0]->data<uint8_t>(), out[0].data<uint8_t>(), sp.out, strides, base,
                  DataTypeSize(in[0]->dtype()));
      return Status::OK();
    };
    Register("Slice", d);
  }

  {  // Gather
    OpDef d;
    d.infer = [](const Node& n, const Metas& in, Outs* out) -> Status {
      TESSERA_RETURN_IF_ERROR(CheckInputs(n, in, 2));
      const Shape& s = in[0]->shape;
      int64_t r = static_cast<int64_t>(s.size());
      int64_t axis = NormalizeAxis(n.GetInt("axis", 0), r);
      if (axis < 0 || axis >= r)
        return Status::InvalidArgument(n.Describe() + ": axis out of range");
      if (in[1]->dtype != DataType::kInt64 && in[1]->dtype != DataType::kInt32)
        return Status::InvalidArgument(n.Describe() + ": indices must be INT32/INT64");
      Shape o(s.begin(), s.begin() + axis);
      o.insert(o.end(), in[1]->shape.begin(), in[1]->shape.end());
      o.insert(o.end(), s.begin() + axis + 1, s.end());
      (*out)[0] = {in[0]->dtype, o, nullptr};
      return Status::OK();
    };
    d.kernel = [](const Node& n, const Ins& in, std::vector<Tensor>& out) -> Status {
      const Shape& s = in[0]->shape();
      int64_t axis = NormalizeAxis(n.GetInt("axis", 0), s.size());
      int64_t outer = 1, inner = 1;
      for (int64_t i = 0; i < axis; ++i) outer *= s[i];
      for (size_t i = axis + 1; i < s.size(); ++i) inner *= s[i];
      const int64_t dim = s[axis], cnt = in[1]->numel();
      const size_t es = DataTypeSize(in[0]->dtype()), blk = inner * es;
      const uint8_t* src = in[0]->data<uint8_t>();
      uint8_t* dst = out[0].data<uint8_t>();
      for (int64_t k = 0; k < cnt; ++k) {
        int64_t idx = in[1]->GetAsInt64(k);
        if (idx < 0) idx += dim;
        if (idx < 0 || idx >= dim)
          return Status::InvalidArgument(n.Describe() + ": index " +
                                         std::to_string(in[1]->GetAsInt64(k)) + " out of range [" +
                                         std::to_string(-dim) + ", " + std::to_string(dim) + ")");
        for (int64_t j = 0; j < outer; ++j)
          std::memcpy(dst + (j * cnt + k) * blk, src + (j * dim + idx) * blk, blk);
      }
      return Status::OK();
    };
    Register("Gather", d);
  }

  {  // Expand
    OpDef d;
    d.infer = [](const Node& n, const Metas& in, Outs* out) -> Status {
      TESSERA_RETURN_IF_ERROR(CheckInputs(n, in, 2));
      TESSERA_ASSIGN_OR_RETURN(auto shp, ConstInts(n, in, 1));
      auto s = BroadcastShapes(in[0]->shape, Shape(shp));
      if (!s.ok()) return s.status().WithContext(n.Describe());
      (*out)[0] = {in[0]->dtype, *s, nullptr};
      return Status::OK();
    };
    d.kernel = [](const Node&, const Ins& in, std::vector<Tensor>& out) {
      BroadcastIter it(out[0].shape(), {in[0]->shape()});
      const size_t es = DataTypeSize(in[0]->dtype());
      const int64_t is = it.InnerStride(0);
      for (int64_t r = 0; r < it.rows; ++r) {
        const uint8_t* s = in[0]->data<uint8_t>() + it.RowOffset(0, r) * es;
        uint8_t* d = out[0].data<uint8_t>() + r * it.inner * es;
        if (is)
          std::memcpy(d, s, it.inner * es);
        else
          for (int64_t j = 0; j < it.inner; ++j) std::memcpy(d + j * es, s, es);
      }
      return Status::OK();
    };
    Register("Expand", d);
  }

  {  // Tile
    OpDef d;
    d.infer = [](const Node& n, const Metas& in, Outs* out) -> Status {
      TESSERA_RETURN_IF_ERROR(CheckInputs(n, in, 2));
      TESSERA_ASSIGN_OR_RETURN(auto rep, ConstInts(n, in, 1));
      if (rep.size() != in[0]->shape.size())
        return Status::InvalidArgument(n.Describe() + ": repeats length != rank");
      Shape o = in[0]->shape;
      for (size_t i = 0; i < o.size(); ++i) o[i] *= rep[i];
      (*out)[0] = {in[0]->dtype, o, nullptr};
      return Status::OK();
    };
    d.kernel = [](const Node&, const Ins& in, std::vector<Tensor>& out) {
      const Shape& s = in[0]->shape();
      const Shape& o = out[0].shape();
      const size_t es = DataTypeSize(in[0]->dtype());
      auto st = ContiguousStrides(s);
      const int64_t total = out[0].numel();
      for (int64_t i = 0; i < total; ++i) {
        int64_t rem = i, off = 0;
        for (size_t k = o.size(); k-- > 0;) {
          off += (rem % o[k] % s[k]) * st[k];
          rem /= o[k];
        }
        std::memcpy(out[0].data<uint8_t>() + i * es, in[0]->data<uint8_t>() + off * es, es);
      }
      return Status::OK();
    };
    Register("Tile", d);
  }

  {  // Pad (constant / reflect / edge)
    OpDef d;
    auto pads_of = [](const Node& n, const Metas& in) -> Result<std::vector<int64_t>> {
      if (n.Has("pads")) return n.GetInts("pads");
      return ConstInts(n, in, 1);
    };
    d.infer = [pads_of](const Node& n, const Metas& in, Outs* out) -> Status {
      TESSERA_RETURN_IF_ERROR(CheckInputs(n, in, 1));
      TESSERA_ASSIGN_OR_RETURN(auto pads, pads_of(n, in));
      Shape o = in[0]->shape;
      const size_t r = o.size();
      if (in.size() > 3 && in[3]) return Status::Unimplemented(n.Describe() + ": axes input");
      if (pads.size() != 2 * r)
        return Status::InvalidArgument(n.Describe() + ": pads must have 2*rank entries");
      for (size_t i = 0; i < r; ++i) {
        o[i] += pads[i] + pads[i + r];
        if (o[i] < 0) return Status::InvalidArgument(n.Describe() + ": negative padded size");
      }
      std::string mode = n.GetString("mode", "constant");
      if (mode != "constant" && mode != "reflect" && mode != "edge")
        return Status::Unimplemented(n.Describe() + ": mode '" + mode + "'");
      (*out)[0] = {in[0]->dtype, o, nullptr};
      return Status::OK();
    };
    d.kernel = [](const Node& n, const Ins& in, std::vector<Tensor>& out) -> Status {
      std::vector<int64_t> pads = n.GetInts("pads");
      if (pads.empty())
        for (int64_t i = 0; i < in[1]->numel(); ++i) pads.push_back(in[1]->GetAsInt64(i));
      const Shape& s = in[0]->shape();
      const Shape& o = out[0].shape();
      const size_t r = s.size(), es = DataTypeSize(in[0]->dtype());
      const std::string mode = n.GetString("mode", "constant");
      std::vector<uint8_t> cval(es, 0);
      if (in.size() > 2 && in[2] && in[2]->numel())
        std::memcpy(cval.data(), in[2]->raw(), es);
      else if (n.Has("value") && in[0]->dtype() == DataType::kFloat32) {
        float v = n.GetFloat("value", 0);
        std::memcpy(cval.data(), &v, 4);
      }
      auto st = ContiguousStrides(s);
      const int64_t total = out[0].numel();
      uint8_t* dst = out[0].data<uint8_t>();
      const uint8_t* src = in[0]->data<uint8_t>();
#pragma omp parallel for if (WorthParallel(total)) schedule(static)
      for (int64_t i = 0; i < total; ++i) {
        int64_t rem = i, off = 0;
        bool inside = true;
        for (size_t k = r; k-- > 0;) {
          int64_t c = rem % o[k] - pads[k];
          rem /= o[k];
          const int64_t d = s[k];
          if (c < 0 || c >= d) {
            if (mode == "constant" || d == 0) {
              inside = false;
              break;
            }
            if (mode == "edge")
              c = c < 0 ? 0 : d - 1;
            else {  // reflect
              const int64_t period = d > 1 ? 2 * (d - 1) : 1;
              c = ((c % period) + period) % period;
              if (c >= d) c = period - c;
            }
          }
          off += c * st[k];
        }
        std::memcpy(dst + i * es, inside ? src + off * es : cval.data(), es);
      }
      return Status::OK();
    };
    Register("Pad", d);
  }

  {  // Shape: folded from the (concrete) input shape; never runs at run time.
    OpDef d;
    d.infer = [](const Node& n, const Metas& in, Outs* out) -> Status {
      TESSERA_RETURN_IF_ERROR(CheckInputs(n, in, 1));
      int64_t r = static_cast<int64_t>(in[0]->shape.size());
      int64_t b = std::clamp<int64_t>(NormalizeAxis(n.GetInt("start", 0), r), 0, r);
      int64_t e = std::clamp<int64_t>(NormalizeAxis(n.GetInt("end", r), r), 0, r);
      (*out)[0] = {DataType::kInt64, {std::max<int64_t>(0, e - b)}, nullptr};
      return Status::OK();
    };
    d.kernel = [](const Node& n, const Ins& in, std::vector<Tensor>& out) {
      const Shape& s = in[0]->shape();
      int64_t r = static_cast<int64_t>(s.size());
      int64_t b = std::clamp<int64_t>(NormalizeAxis(n.GetInt("start", 0), r), 0, r);
      for (int64_t i = 0; i < out[0].numel(); ++i) out[0].data<int64_t>()[i] = s[b + i];
      return Status::OK();
    };
    Register("Shape", d);
    OpDef sz;
    sz.infer = [](const Node& n, const Metas& in, Outs* out) -> Status {
      TESSERA_RETURN_IF_ERROR(CheckInputs(n, in, 1));
      (*out)[0] = {DataType::kInt64, {}, nullptr};
      return Status::OK();
    };
    sz.kernel = [](const Node&, const Ins& in, std::vector<Tensor>& out) {
      out[0].data<int64_t>()[0] = in[0]->numel();
      return Status::OK();
    };
    Register("Size", sz);
  }

  {  // ConstantOfShape
    OpDef d;
    d.infer = [](const Node& n, const Metas& in, Outs* out) -> Status {
      TESSERA_RETURN_IF_ERROR(CheckInputs(n, in, 1));
      TESSERA_ASSIGN_OR_RETURN(auto shp, ConstInts(n, in, 0));
      for (auto v : shp)
        if (v < 0) return Status::InvalidArgument(n.Describe() + ": negative dim");
      DataType dt = n.Has("value") ? n.attrs.at("value").t.dtype() : DataType::kFloat32;
      (*out)[0] = {dt, Shape(shp), nullptr};
      return Status::OK();
    };
    d.kernel = [](const Node& n, const Ins&, std::vector<Tensor>& out) {
      const size_t es = DataTypeSize(out[0].dtype());
      if (!n.Has("value")) return Status::OK();  // zero-filled already
      const Tensor& v = n.attrs.at("value").t;
      for (int64_t i = 0; i < out[0].numel(); ++i)
        std::memcpy(out[0].data<uint8_t>() + i * es, v.raw(), es);
      return Status::OK();
    };
    Register("ConstantOfShape", d);
  }

  {  // Range
    OpDef d;
    d.infer = [](const Node& n, const Metas& in, Outs* out) -> Status {
      TESSERA_RETURN_IF_ERROR(CheckInputs(n, in, 3));
      for (int i = 0; i < 3; ++i)
        if (!in[i]->constant)
          return Status::Unimplemented(n.Describe() + ": inputs must be compile-time constants");
      double s = in[0]->constant->GetAsDouble(0), l = in[1]->constant->GetAsDouble(0),
             dl = in[2]->constant->GetAsDouble(0);
      if (dl == 0) return Status::InvalidArgument(n.Describe() + ": delta is 0");
      int64_t cnt = std::max<int64_t>(0, static_cast<int64_t>(std::ceil((l - s) / dl)));
      (*out)[0] = {in[0]->dtype, {cnt}, nullptr};
      return Status::OK();
    };
    d.kernel = [](const Node& n, const Ins& in, std::vector<Tensor>& out) {
      VisitNumeric(out[0].dtype(), [&](auto tag) {
        using T = decltype(tag);
        if constexpr (!std::is_same_v<T, Bool8>) {
          const double s = in[0]->GetAsDouble(0), dl = in[2]->GetAsDouble(0);
          for (int64_t i = 0; i < out[0].numel(); ++i)
            out[0].data<T>()[i] = static_cast<T>(s + dl * static_cast<double>(i));
        }
      });
      return Status::OK();
    };
    Register("Range", d);
  }
}

}  // namespace tessera::ops
