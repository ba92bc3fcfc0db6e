// Reading typed fields out of JSON documents with errors that name the field.
//
// Every scenario, profile and plan file Tessera reads goes through these, so a bad file gets
// the same kind of message everywhere: "<file>.models[2].rate: expected a number > 0, got
// string \"fast\"". Absent optional fields leave *out untouched. Thread-safe (no state).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "tessera/core/status.h"

namespace tessera::json_fields {

using nlohmann::json;

// "number 3", "string \"x\"", "boolean true", "array", ...: how a value reads in an error.
std::string Describe(const json& v);

// InvalidArgument "<where>: expected <expected>, got <Describe(got)>".
Status Bad(const std::string& where, const std::string& expected, const json& got);

// Fails on the first key of `obj` not in `known`, listing the known ones.
Status CheckKeys(const json& obj, const std::string& where, const std::set<std::string>& known);

// A required key: NotFound-style InvalidArgument "<where>: '<key>' is required" when absent.
Status Require(const json& obj, const std::string& key, const std::string& where);

// Optional number > min (or >= min when allow_equal), finite.
Status GetNumber(const json& obj, const std::string& key, const std::string& where, double* out,
                 double min, bool allow_equal = false);
// Optional integer >= min.
Status GetInt(const json& obj, const std::string& key, const std::string& where, int64_t* out,
              int64_t min);
Status GetString(const json& obj, const std::string& key, const std::string& where,
                 std::string* out);
Status GetBool(const json& obj, const std::string& key, const std::string& where, bool* out);

// Parses `text` as JSON; errors name `what` (a file name) and the parser's position.
Result<json> ParseDocument(const std::string& text, const std::string& what);
// Reads and parses a file; NotFound when it cannot be opened.
Result<json> ReadDocument(const std::string& path);

}  // namespace tessera::json_fields
