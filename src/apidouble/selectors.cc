#include "selectors.h"

#include <algorithm>

namespace efadra::apidouble {
namespace {

std::string Trim(std::string_view s) {
  size_t b = s.find_first_not_of(" \t");
  if (b == std::string_view::npos) return "";
  size_t e = s.find_last_not_of(" \t");
  return std::string(s.substr(b, e - b + 1));
}

std::vector<std::string> SplitTerms(std::string_view text) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    if (comma == std::string_view::npos) comma = text.size();
    std::string term = Trim(text.substr(start, comma - start));
    if (!term.empty()) out.push_back(std::move(term));
    start = comma + 1;
  }
  return out;
}

Result<Selector> Parse(std::string_view text, bool labels) {
  Selector selector;
  const char* what = labels ? "labelSelector" : "fieldSelector";
  for (const std::string& term : SplitTerms(text)) {
    Requirement req;
    size_t pos;
    if ((pos = term.find("!=")) != std::string::npos) {
      req.op = Requirement::Op::kNotEquals;
      req.key = Trim(std::string_view(term).substr(0, pos));
      req.value = Trim(std::string_view(term).substr(pos + 2));
    } else if ((pos = term.find("==")) != std::string::npos) {
      req.key = Trim(std::string_view(term).substr(0, pos));
      req.value = Trim(std::string_view(term).substr(pos + 2));
    } else if ((pos = term.find('=')) != std::string::npos) {
      req.key = Trim(std::string_view(term).substr(0, pos));
      req.value = Trim(std::string_view(term).substr(pos + 1));
    } else if (labels && term.find(' ') == std::string::npos &&
               term.find('(') == std::string::npos) {
      if (term[0] == '!') {
        req.op = Requirement::Op::kNotExists;
        req.key = Trim(std::string_view(term).substr(1));
      } else {
        req.op = Requirement::Op::kExists;
        req.key = term;
      }
    } else {
      return InvalidArgumentError(std::string("invalid ") + what + " term \"" + term +
                                  "\" (only =, ==, != and existence are supported)");
    }
    if (req.key.empty()) {
      return InvalidArgumentError(std::string("invalid ") + what + " term \"" + term +
                                  "\": empty key");
    }
    selector.push_back(std::move(req));
  }
  return selector;
}

}  // namespace

Result<Selector> ParseLabelSelector(std::string_view text) { return Parse(text, true); }
Result<Selector> ParseFieldSelector(std::string_view text) { return Parse(text, false); }

bool MatchesLabels(const Selector& selector, const nlohmann::json& object) {
  const nlohmann::json* labels = nullptr;
  auto meta = object.find("metadata");
  if (meta != object.end() && meta->is_object()) {
    auto it = meta->find("labels");
    if (it != meta->end() && it->is_object()) labels = &*it;
  }
  for (const Requirement& req : selector) {
    bool has = labels != nullptr && labels->contains(req.key);
    std::string value;
    if (has && (*labels)[req.key].is_string()) value = (*labels)[req.key].get<std::string>();
    switch (req.op) {
      case Requirement::Op::kEquals:
        if (!has || value != req.value) return false;
        break;
      case Requirement::Op::kNotEquals:
        if (has && value == req.value) return false;
        break;
      case Requirement::Op::kExists:
        if (!has) return false;
        break;
      case Requirement::Op::kNotExists:
        if (has) return false;
        break;
    }
  }
  return true;
}

std::string FieldValue(const nlohmann::json& object, std::string_view path) {
  const nlohmann::json* cur = &object;
  size_t start = 0;
  while (start <= path.size()) {
    size_t dot = path.find('.', start);
    if (dot == std::string_view::npos) dot = path.size();
    std::string key(path.substr(start, dot - start));
    if (!cur->is_object()) return "";
    auto it = cur->find(key);
    if (it == cur->end()) return "";
    cur = &*it;
    start = dot + 1;
  }
  if (cur->is_string()) return cur->get<std::string>();
  if (cur->is_null()) return "";
  return cur->dump();
}

bool MatchesFields(const Selector& selector, const nlohmann::json& object) {
  return std::all_of(selector.begin(), selector.end(), [&](const Requirement& req) {
    bool equal = FieldValue(object, req.key) == req.value;
    return req.op == Requirement::Op::kNotEquals ? !equal : equal;
  });
}

}  // namespace efadra::apidouble
