#include "tessera/core/json_fields.h"

#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

namespace tessera::json_fields {

std::string Describe(const json& v) {
  if (v.is_number()) return "number " + v.dump();
  if (v.is_string()) return "string " + v.dump();
  if (v.is_boolean()) return std::string("boolean ") + (v.get<bool>() ? "true" : "false");
  return v.type_name();
}

Status Bad(const std::string& where, const std::string& expected, const json& got) {
  return Status::InvalidArgument(where + ": expected " + expected + ", got " + Describe(got));
}

Status CheckKeys(const json& obj, const std::string& where, const std::set<std::string>& known) {
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    if (known.count(it.key())) continue;
    std::string list;
    for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
    return Status::InvalidArgument(where + ": unknown field '" + it.key() + "' (known: " + list +
                                   ")");
  }
  return Status::OK();
}

Status Require(const json& obj, const std::string& key, const std::string& where) {
  if (obj.contains(key)) return Status::OK();
  return Status::InvalidArgument(where + ": '" + key + "' is required");
}

Status GetNumber(const json& obj, const std::string& key, const std::string& where, double* out,
                 double min, bool allow_equal) {
  if (!obj.contains(key)) return Status::OK();
  const json& v = obj[key];
  char bound[32];
  std::snprintf(bound, sizeof bound, "%g", min);
  const std::string want = std::string("a number ") + (allow_equal ? ">= " : "> ") + bound;
  if (!v.is_number()) return Bad(where + "." + key, want, v);
  const double d = v.get<double>();
  if (!std::isfinite(d) || d < min || (!allow_equal && d == min))
    return Bad(where + "." + key, want, v);
  *out = d;
  return Status::OK();
}

Status GetInt(const json& obj, const std::string& key, const std::string& where, int64_t* out,
              int64_t min) {
  if (!obj.contains(key)) return Status::OK();
  const json& v = obj[key];
  if (!v.is_number_integer() || v.get<int64_t>() < min)
    return Bad(where + "." + key, "an integer >= " + std::to_string(min), v);
  *out = v.get<int64_t>();
  return Status::OK();
}

Status GetString(const json& obj, const std::string& key, const std::string& where,
                 std::string* out) {
  if (!obj.contains(key)) return Status::OK();
  if (!obj[key].is_string()) return Bad(where + "." + key, "a string", obj[key]);
  *out = obj[key].get<std::string>();
  return Status::OK();
}

Status GetBool(const json& obj, const std::string& key, const std::string& where, bool* out) {
  if (!obj.contains(key)) return Status::OK();
  if (!obj[key].is_boolean()) return Bad(where + "." + key, "true or false", obj[key]);
  *out = obj[key].get<bool>();
  return Status::OK();
}

Result<json> ParseDocument(const std::string& text, const std::string& what) {
  try {
    return json::parse(text);
  } catch (const json::parse_error& e) {
    // e.what() reads "[json.exception.parse_error.101] parse error at line 3, column 5: ...".
    std::string msg = e.what();
    const auto at = msg.find("parse error");
    if (at != std::string::npos) msg = msg.substr(at);
    return Status::InvalidArgument(what + ": not valid JSON (" + msg + ")");
  }
}

Result<json> ReadDocument(const std::string& path) {
  std::ifstream f(path);
  if (!f) return Status::NotFound("cannot read " + path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ParseDocument(ss.str(), path);
}

}  // namespace tessera::json_fields
