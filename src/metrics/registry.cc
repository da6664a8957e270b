#include "metrics/registry.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace sqs2pg::metrics {
namespace {

bool ValidName(std::string_view name, bool allow_colon) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (allow_colon && c == ':') ||
              (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

void CheckNames(const std::string& name, Type type, const std::vector<std::string>& label_names) {
  if (!ValidName(name, true)) throw std::invalid_argument("metric name not valid: " + name);
  if (type == Type::kCounter && !name.ends_with("_total")) {
    throw std::invalid_argument("a counter's name must end in _total: " + name);
  }
  for (const std::string& label : label_names) {
    // Names starting with __ are reserved for Prometheus; "le" is the histogram's own label.
    if (!ValidName(label, false) || label.starts_with("__") || (type == Type::kHistogram && label == "le")) {
      throw std::invalid_argument(fmt::format("label name {} not valid for {}", label, name));
    }
  }
}

const char* TypeName(Type type) {
  switch (type) {
    case Type::kCounter:
      return "counter";
    case Type::kGauge:
      return "gauge";
    case Type::kHistogram:
      return "histogram";
  }
  return "untyped";
}

void AppendHeader(std::string& out, const std::string& name, const std::string& help, Type type) {
  out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, EscapeHelp(help), name, TypeName(type));
}

// {a="x",b="y"} (with `extra` last, for a histogram's le), or nothing when there are no labels.
void AppendLabels(std::string& out, const std::vector<std::string>& names,
                  const std::vector<std::string>& values, std::string_view extra_name = {},
                  std::string_view extra_value = {}) {
  if (names.empty() && extra_name.empty()) return;
  out.push_back('{');
  for (size_t i = 0; i < names.size(); ++i) {
    if (i > 0) out.push_back(',');
    out += fmt::format("{}=\"{}\"", names[i], EscapeLabelValue(values[i]));
  }
  if (!extra_name.empty()) {
    if (!names.empty()) out.push_back(',');
    out += fmt::format("{}=\"{}\"", extra_name, extra_value);
  }
  out.push_back('}');
}

// " <value>\n" ending a sample line. (Appended piecewise: GCC 12 at -O3 warns, wrongly, about
// overlapping copies in `" " + text + "\n"`.)
void AppendValue(std::string& out, const std::string& value) {
  out.push_back(' ');
  out += value;
  out.push_back('\n');
}

}  // namespace

std::string EscapeHelp(std::string_view help) {
  std::string out;
  for (char c : help) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else
      out.push_back(c);
  }
  return out;
}

std::string EscapeLabelValue(std::string_view value) {
  std::string out;
  for (char c : value) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out.push_back(c);
  }
  return out;
}

std::string FormatValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  // Whole numbers (counts, bytes) without an exponent up to 2^53, where doubles stop being exact.
  if (v == std::floor(v) && std::fabs(v) < 9007199254740992.0)
    return fmt::format("{}", static_cast<std::int64_t>(v));
  return fmt::format("{}", v);  // the shortest text that reads back as the same double
}

Histogram::Histogram(std::vector<double> upper_bounds) : bounds_(std::move(upper_bounds)) {
  if (!std::is_sorted(bounds_.begin(), bounds_.end()) ||
      std::adjacent_find(bounds_.begin(), bounds_.end()) != bounds_.end()) {
    throw std::invalid_argument("histogram bounds must be strictly increasing");
  }
  // +Inf is always there; a bound of +Inf given explicitly would be a second one.
  if (!bounds_.empty() && std::isinf(bounds_.back())) bounds_.pop_back();
  buckets_ = std::make_unique<std::atomic<std::uint64_t>[]>(bounds_.size() + 1);
  for (size_t i = 0; i <= bounds_.size(); ++i) buckets_[i].store(0, std::memory_order_relaxed);
}

void Histogram::Observe(double v) {
  // Few buckets: a linear scan beats a binary search's branches.
  size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(v, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
}

std::vector<std::uint64_t> Histogram::BucketCounts() const {
  std::vector<std::uint64_t> out(bounds_.size() + 1);
  for (size_t i = 0; i < out.size(); ++i) out[i] = buckets_[i].load(std::memory_order_relaxed);
  return out;
}

std::vector<double> ExponentialBuckets(double start, double factor, int count) {
  std::vector<double> out;
  double v = start;
  for (int i = 0; i < count; ++i, v *= factor) out.push_back(v);
  return out;
}

void Registry::Add(const std::string& name, Type type, std::function<void(std::string&)> render) {
  for (const Entry& e : entries_) {
    if (e.name == name) throw std::invalid_argument("metric registered twice: " + name);
  }
  entries_.push_back(Entry{name, type, std::move(render)});
}

namespace {
std::string ValueText(const Counter& c) { return std::to_string(c.Value()); }
std::string ValueText(const Gauge& g) { return FormatValue(g.Value()); }
}  // namespace

template <typename T>
Family<T>& Registry::AddScalar(std::deque<std::unique_ptr<Family<T>>>& store, const std::string& name,
                               const std::string& help, std::vector<std::string> label_names, Type type) {
  CheckNames(name, type, label_names);
  std::lock_guard lock(mu_);
  auto* f = store
                .emplace_back(
                    new Family<T>(name, help, std::move(label_names), [] { return std::make_unique<T>(); }))
                .get();
  Add(name, type, [f, type](std::string& out) {
    AppendHeader(out, f->name_, f->help_, type);
    std::lock_guard lock(f->mu_);
    for (const auto& [values, child] : f->children_) {
      out += f->name_;
      AppendLabels(out, f->label_names_, values);
      AppendValue(out, ValueText(*child));
    }
  });
  return *f;
}

Family<Counter>& Registry::AddCounter(const std::string& name, const std::string& help,
                                      std::vector<std::string> label_names) {
  return AddScalar(counters_, name, help, std::move(label_names), Type::kCounter);
}

Family<Gauge>& Registry::AddGauge(const std::string& name, const std::string& help,
                                  std::vector<std::string> label_names) {
  return AddScalar(gauges_, name, help, std::move(label_names), Type::kGauge);
}

Family<Histogram>& Registry::AddHistogram(const std::string& name, const std::string& help,
                                          std::vector<double> bounds, std::vector<std::string> label_names) {
  CheckNames(name, Type::kHistogram, label_names);
  Histogram probe(bounds);  // checks the bounds now, not at the first With()
  std::lock_guard lock(mu_);
  auto* f = histograms_
                .emplace_back(new Family<Histogram>(name, help, std::move(label_names),
                                                    [bounds] { return std::make_unique<Histogram>(bounds); }))
                .get();
  Add(name, Type::kHistogram, [f](std::string& out) {
    AppendHeader(out, f->name_, f->help_, Type::kHistogram);
    std::lock_guard lock(f->mu_);
    for (const auto& [values, h] : f->children_) {
      std::vector<std::uint64_t> counts = h->BucketCounts();
      std::uint64_t cumulative = 0;
      for (size_t i = 0; i < counts.size(); ++i) {
        cumulative += counts[i];
        std::string le = i < h->upper_bounds().size() ? FormatValue(h->upper_bounds()[i]) : "+Inf";
        out += f->name_ + "_bucket";
        AppendLabels(out, f->label_names_, values, "le", le);
        out += fmt::format(" {}\n", cumulative);
      }
      // _count equals the +Inf bucket, read from the same snapshot, so the two always agree.
      out += f->name_ + "_sum";
      AppendLabels(out, f->label_names_, values);
      AppendValue(out, FormatValue(h->Sum()));
      out += f->name_ + "_count";
      AppendLabels(out, f->label_names_, values);
      out += fmt::format(" {}\n", cumulative);
    }
  });
  return *f;
}

void Registry::AddCollector(const std::string& name, const std::string& help, Type type,
                            std::function<std::vector<Sample>()> collect) {
  if (type == Type::kHistogram) throw std::invalid_argument("a collector gives counters or gauges: " + name);
  CheckNames(name, type, {});
  std::lock_guard lock(mu_);
  Add(name, type, [name, help, type, collect = std::move(collect)](std::string& out) {
    std::vector<Sample> samples = collect();
    AppendHeader(out, name, help, type);
    for (const Sample& s : samples) {
      out += name;
      if (!s.labels.empty()) {
        out.push_back('{');
        for (size_t i = 0; i < s.labels.size(); ++i) {
          if (i > 0) out.push_back(',');
          out += fmt::format("{}=\"{}\"", s.labels[i].first, EscapeLabelValue(s.labels[i].second));
        }
        out.push_back('}');
      }
      AppendValue(out, FormatValue(s.value));
    }
  });
}

std::string Registry::Render() const {
  std::lock_guard lock(mu_);
  std::string out;
  for (const Entry& e : entries_) e.render(out);
  return out;
}

std::vector<std::string> Registry::Names() const {
  std::lock_guard lock(mu_);
  std::vector<std::string> out;
  for (const Entry& e : entries_) out.push_back(e.name);
  return out;
}

}  // namespace sqs2pg::metrics
