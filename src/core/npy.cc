#include "tessera/core/npy.h"

#include <cstring>
#include <fstream>
#include <sstream>

namespace tessera {
namespace {

const char* NpyDescr(DataType t) {
  switch (t) {
    case DataType::kBool:
      return "|b1";
    case DataType::kUInt8:
      return "|u1";
    case DataType::kInt8:
      return "|i1";
    case DataType::kUInt16:
      return "<u2";
    case DataType::kInt16:
      return "<i2";
    case DataType::kUInt32:
      return "<u4";
    case DataType::kInt32:
      return "<i4";
    case DataType::kUInt64:
      return "<u8";
    case DataType::kInt64:
      return "<i8";
    case DataType::kFloat16:
      return "<f2";
    case DataType::kFloat32:
      return "<f4";
    case DataType::kFloat64:
      return "<f8";
    default:
      return nullptr;
  }
}

Result<DataType> DescrToType(const std::string& d) {
  for (DataType t :
       {DataType::kBool, DataType::kUInt8, DataType::kInt8, DataType::kUInt16, DataType::kInt16,
        DataType::kUInt32, DataType::kInt32, DataType::kUInt64, DataType::kInt64,
        DataType::kFloat16, DataType::kFloat32, DataType::kFloat64}) {
    std::string ours = NpyDescr(t);
    if (d == ours ||
        (d.size() == 3 && (d[0] == '=' || d[0] == '|') && d.substr(1) == ours.substr(1)))
      return t;
  }
  return Status::InvalidArgument("unsupported .npy dtype '" + d +
                                 "', expected little-endian bool/int/uint/float");
}

// Extracts the value text after 'key': in a Python dict literal header.
Result<std::string> HeaderField(const std::string& h, const std::string& key) {
  size_t k = h.find("'" + key + "'");
  if (k == std::string::npos) return Status::InvalidArgument(".npy header lacks '" + key + "'");
  size_t c = h.find(':', k);
  if (c == std::string::npos) return Status::InvalidArgument(".npy header malformed at " + key);
  size_t s = h.find_first_not_of(' ', c + 1);
  if (s == std::string::npos) return Status::InvalidArgument(".npy header malformed");
  char open = h[s];
  size_t e;
  if (open == '\'') {
    e = h.find('\'', s + 1);
    if (e == std::string::npos) return Status::InvalidArgument(".npy header malformed");
    return h.substr(s + 1, e - s - 1);
  }
  if (open == '(') {
    e = h.find(')', s);
    if (e == std::string::npos) return Status::InvalidArgument(".npy header malformed");
    return h.substr(s + 1, e - s - 1);
  }
  e = h.find_first_of(",}", s);
  if (e == std::string::npos) return Status::InvalidArgument(".npy header malformed");
  return h.substr(s, e - s);
}

}  // namespace

Result<Tensor> ParseNpy(const std::string& b) {
  if (b.size() < 10 || std::memcmp(b.data(), "\x93NUMPY", 6) != 0)
    return Status::InvalidArgument("not a .npy file (missing \\x93NUMPY magic)");
  int major = static_cast<uint8_t>(b[6]);
  size_t hlen, hstart;
  if (major == 1) {
    hlen = static_cast<uint8_t>(b[8]) | (static_cast<uint8_t>(b[9]) << 8);
    hstart = 10;
  } else if (major == 2 || major == 3) {
    if (b.size() < 12) return Status::InvalidArgument(".npy truncated header");
    hlen = 0;
    for (int i = 0; i < 4; ++i)
      hlen |= static_cast<size_t>(static_cast<uint8_t>(b[8 + i])) << (8 * i);
    hstart = 12;
  } else {
    return Status::InvalidArgument(".npy version " + std::to_string(major) + " unsupported");
  }
  if (hstart + hlen > b.size()) return Status::InvalidArgument(".npy truncated header");
  std::string h = b.substr(hstart, hlen);
  TESSERA_ASSIGN_OR_RETURN(std::string descr, HeaderField(h, "descr"));
  TESSERA_ASSIGN_OR_RETURN(std::string order, HeaderField(h, "fortran_order"));
  TESSERA_ASSIGN_OR_RETURN(std::string shape_s, HeaderField(h, "shape"));
  if (order.find("True") != std::string::npos)
    return Status::InvalidArgument(".npy in Fortran order is not supported; save C-ordered");
  TESSERA_ASSIGN_OR_RETURN(DataType dt, DescrToType(descr));
  Shape shape;
  std::stringstream ss(shape_s);
  std::string tok;
  while (std::getline(ss, tok, ',')) {
    size_t a = tok.find_first_not_of(" ");
    if (a == std::string::npos) continue;
    try {
      shape.push_back(std::stoll(tok.substr(a)));
    } catch (...) {
      return Status::InvalidArgument(".npy shape '" + shape_s + "' is not a tuple of integers");
    }
    if (shape.back() < 0) return Status::InvalidArgument(".npy negative dimension");
  }
  Tensor t = Tensor::Allocate(dt, shape);
  size_t off = hstart + hlen;
  if (b.size() - off < t.nbytes())
    return Status::InvalidArgument(".npy data truncated: need " + std::to_string(t.nbytes()) +
                                   " bytes, have " + std::to_string(b.size() - off));
  std::memcpy(t.raw(), b.data() + off, t.nbytes());
  return t;
}

Result<Tensor> LoadNpy(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return Status::NotFound("cannot open .npy file '" + path + "'");
  std::stringstream ss;
  ss << f.rdbuf();
  auto r = ParseNpy(ss.str());
  if (!r.ok()) return r.status().WithContext(path);
  return r;
}

Status SaveNpy(const std::string& path, const Tensor& t) {
  const char* descr = NpyDescr(t.dtype());
  if (!descr)
    return Status::InvalidArgument(std::string("cannot save dtype ") + DataTypeName(t.dtype()));
  std::string shape;
  for (size_t i = 0; i < t.rank(); ++i) shape += std::to_string(t.dim(i)) + ",";
  if (t.rank() > 1) shape.pop_back();
  std::string h =
      std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': (" + shape + "), }";
  size_t total = 10 + h.size() + 1;
  h.append((64 - total % 64) % 64, ' ');
  h.push_back('\n');
  std::ofstream f(path, std::ios::binary);
  if (!f) return Status::NotFound("cannot write '" + path + "'");
  f.write("\x93NUMPY\x01\x00", 8);
  uint16_t hl = static_cast<uint16_t>(h.size());
  f.put(static_cast<char>(hl & 0xff));
  f.put(static_cast<char>(hl >> 8));
  f.write(h.data(), static_cast<std::streamsize>(h.size()));
  f.write(static_cast<const char*>(t.raw()), static_cast<std::streamsize>(t.nbytes()));
  return f ? Status::OK() : Status::Internal("write failed for '" + path + "'");
}

}  // namespace tessera
