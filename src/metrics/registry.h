#pragma once
// A small metrics registry and the Prometheus text exposition format (version 0.0.4), written
// here because Debian has no Prometheus client library for C++.
//
// Updating a metric is one relaxed atomic add or store: no lock, no allocation. Label sets are
// looked up (under a mutex) once, at set-up, and the caller keeps the Counter&/Gauge&/Histogram&
// it got; every reference stays valid for the registry's lifetime. Rendering (a scrape) reads
// the atomics without stopping the writers, so a histogram's count and sum may disagree by the
// observations made during the scrape, as with every Prometheus client.

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace sqs2pg::metrics {

// A value that only goes up (resets to 0 only when the process restarts).
class Counter {
 public:
  void Inc(std::uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  std::uint64_t Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> value_{0};
};

// A value that goes up and down.
class Gauge {
 public:
  void Set(double v) { value_.store(v, std::memory_order_relaxed); }
  void Add(double d) { value_.fetch_add(d, std::memory_order_relaxed); }
  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

// Observations counted into fixed buckets (upper bounds, ascending), with their sum.
class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);
  void Observe(double v);
  // Not cumulative: bucket i counts observations in (bound[i-1], bound[i]]; the last is +Inf.
  std::vector<std::uint64_t> BucketCounts() const;
  const std::vector<double>& upper_bounds() const { return bounds_; }
  std::uint64_t Count() const { return count_.load(std::memory_order_relaxed); }
  double Sum() const { return sum_.load(std::memory_order_relaxed); }

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> buckets_;  // bounds_.size() + 1 (+Inf)
  std::atomic<std::uint64_t> count_{0};
  std::atomic<double> sum_{0};
};

// Bounds start, start*factor, ... (count of them), like client_golang's ExponentialBuckets.
std::vector<double> ExponentialBuckets(double start, double factor, int count);

using Labels = std::vector<std::pair<std::string, std::string>>;

enum class Type { kCounter, kGauge, kHistogram };

// One metric name with its help, type and label names, and a child per label-value set.
template <typename T>
class Family {
 public:
  // The child for these label values, in the order of the family's label names; made on first
  // use. Call at set-up and keep the reference: this takes a lock.
  T& With(const std::vector<std::string>& label_values);
  // The child of a family without labels.
  T& Get() { return With({}); }

 private:
  friend class Registry;
  Family(std::string name, std::string help, std::vector<std::string> label_names,
         std::function<std::unique_ptr<T>()> make)
      : name_(std::move(name)),
        help_(std::move(help)),
        label_names_(std::move(label_names)),
        make_(std::move(make)) {}

  std::string name_, help_;
  std::vector<std::string> label_names_;
  std::function<std::unique_ptr<T>()> make_;
  mutable std::mutex mu_;
  std::map<std::vector<std::string>, std::unique_ptr<T>> children_;  // sorted: stable output
};

// A sample a collector computes at scrape time (process metrics, ages relative to now).
struct Sample {
  Labels labels;
  double value = 0;
};

class Registry {
 public:
  Registry() = default;
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Names must match [a-zA-Z_:][a-zA-Z0-9_:]*, and a counter's must end in _total; both are
  // checked (std::invalid_argument), since a bad name only shows up when Prometheus rejects a
  // scrape. A name registered twice is an error too.
  Family<Counter>& AddCounter(const std::string& name, const std::string& help,
                              std::vector<std::string> label_names = {});
  Family<Gauge>& AddGauge(const std::string& name, const std::string& help,
                          std::vector<std::string> label_names = {});
  Family<Histogram>& AddHistogram(const std::string& name, const std::string& help,
                                  std::vector<double> bounds, std::vector<std::string> label_names = {});
  // A counter or gauge whose samples `collect` computes at each scrape. Runs on the scraping
  // thread: it must be thread-safe and quick.
  void AddCollector(const std::string& name, const std::string& help, Type type,
                    std::function<std::vector<Sample>()> collect);

  // Every metric, in registration order, in the text exposition format.
  std::string Render() const;
  // The names registered, for tests that check what a dashboard queries.
  std::vector<std::string> Names() const;

 private:
  struct Entry {
    std::string name;
    Type type;
    std::function<void(std::string&)> render;
  };
  void Add(const std::string& name, Type type, std::function<void(std::string&)> render);
  template <typename T>
  Family<T>& AddScalar(std::deque<std::unique_ptr<Family<T>>>& store, const std::string& name,
                       const std::string& help, std::vector<std::string> label_names, Type type);

  mutable std::mutex mu_;
  std::vector<Entry> entries_;
  // Families live here, at stable addresses, for as long as the registry.
  std::deque<std::unique_ptr<Family<Counter>>> counters_;
  std::deque<std::unique_ptr<Family<Gauge>>> gauges_;
  std::deque<std::unique_ptr<Family<Histogram>>> histograms_;
};

// The pieces of the text format, exposed for tests.
// HELP text: backslash and newline escaped.
std::string EscapeHelp(std::string_view help);
// A label value: backslash, double quote and newline escaped.
std::string EscapeLabelValue(std::string_view value);
// A sample value: integers without a fraction, +Inf/-Inf/NaN spelled as Prometheus reads them.
std::string FormatValue(double v);

template <typename T>
T& Family<T>::With(const std::vector<std::string>& label_values) {
  if (label_values.size() != label_names_.size()) {
    throw std::invalid_argument(name_ + ": wrong number of label values");
  }
  std::lock_guard lock(mu_);
  auto& child = children_[label_values];
  if (!child) child = make_();
  return *child;
}

}  // namespace sqs2pg::metrics
