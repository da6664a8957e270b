// sqs2pg check: preflight. With the configuration `run` would use, checks what can be checked
// without changing anything, one line each, and says what to do about each failure.
//
// Checked: the masking key; the AWS credentials (their source, and STS GetCallerIdentity); the
// queue (GetQueueUrl, GetQueueAttributes), its visibility timeout against the heartbeat and the
// shutdown timeout, its redrive policy; sqs:DeleteMessage and sqs:ChangeMessageVisibility, by
// calls with a receipt handle that matches no message (SQS authorizes a call before it looks at
// the handle, so "invalid handle" means allowed); Postgres: reachable, the table's shape, the
// privileges a load needs. Not checked: sqs:ReceiveMessage, since a receive hides a message and
// counts towards its maxReceiveCount (`run --dry-run` exercises it).

#include <fmt/format.h>
#include <simdjson.h>

#include <iostream>

#include "aws/aws_config.h"
#include "aws/credential_cache.h"
#include "aws/sts.h"
#include "cli/cli_common.h"
#include "cli/commands.h"
#include "cli/run_options.h"
#include "sink/postgres/postgres_sink.h"
#include "source/sqs/sqs_client.h"
#include "transform/keyring.h"

namespace sqs2pg::cli {
namespace {

class Report {
 public:
  void Pass(const std::string& what) { std::cout << "✓ " << what << "\n"; }
  // A problem that does not stop `run`, but that an operator should know of.
  void Warn(const std::string& what, const std::string& todo) {
    std::cout << "! " << what << ": " << todo << "\n";
  }
  void Fail(const std::string& what, const std::string& todo) {
    std::cout << "✗ " << what << (todo.empty() ? "" : ": " + todo) << "\n";
    ++failures_;
  }
  void NotChecked(const std::string& what) { std::cout << "- not checked: " << what << "\n"; }
  int failures() const { return failures_; }

 private:
  int failures_ = 0;
};

bool IsAccessDenied(const Status& st) {
  for (const char* marker : {"AccessDenied", "not authorized", "UnauthorizedOperation"}) {
    if (st.message().find(marker) != std::string::npos) return true;
  }
  return false;
}

// The call with a receipt handle that matches no message: allowed if SQS refuses the handle.
template <typename Call>
void ProbePermission(Report& report, const std::string& action, Call call) {
  auto result = call();
  if (result.ok() || !IsAccessDenied(result.status())) {
    if (!result.ok() && result.status().message().find("ReceiptHandleIsInvalid") == std::string::npos) {
      report.Fail(action + " could not be checked", result.status().message());
      return;
    }
    report.Pass(action + " allowed (a call with a made-up receipt handle was refused for the handle only)");
    return;
  }
  report.Fail(action + " denied",
              result.status().message() + "; grant it on the queue to the role sqs2pg runs as");
}

void CheckQueue(Report& report, const RunOptions& o, const sqs::ClientConfig& config) {
  auto client = sqs::SqsClient::Create(config);
  if (!client.ok()) return report.Fail("SQS client", client.status().message());
  auto url = ResolveQueueUrl(**client, o.queue);
  if (!url.ok()) {
    return report.Fail("queue",
                       url.status().message() + "; check --queue/--queue-url, --region and --endpoint-url");
  }
  report.Pass(
      fmt::format("queue {} exists{}", *url, o.queue.queue_url.empty() ? " (sqs:GetQueueUrl allowed)" : ""));
  auto attributes = (*client)->GetQueueAttributes(
      *url, {"VisibilityTimeout", "RedrivePolicy", "ApproximateNumberOfMessages",
             "ApproximateNumberOfMessagesNotVisible"});
  if (!attributes.ok()) {
    return report.Fail("sqs:GetQueueAttributes", attributes.status().message() + "; run needs it at start");
  }
  auto attribute = [&](const char* name) {
    auto it = attributes->find(name);
    return it == attributes->end() ? std::string() : it->second;
  };
  report.Pass(fmt::format("sqs:GetQueueAttributes allowed: {} messages waiting, {} in flight",
                          attribute("ApproximateNumberOfMessages"),
                          attribute("ApproximateNumberOfMessagesNotVisible")));

  // The heartbeat extends each message in hand at half its visibility timeout.
  std::string queue_visibility = attribute("VisibilityTimeout");
  int visibility = o.visibility_timeout >= 0
                       ? o.visibility_timeout
                       : (queue_visibility.empty() ? 30 : std::atoi(queue_visibility.c_str()));
  std::string from = o.visibility_timeout >= 0 ? "--visibility-timeout" : "the queue's";
  if (visibility == 0) {
    report.Fail(
        fmt::format("visibility timeout 0 s ({})", from),
        "every message is visible again at once and may be loaded twice; set the queue's VisibilityTimeout "
        "(30 s is fine: the heartbeat extends messages in hand)");
  } else if (visibility < o.shutdown_timeout) {
    report.Warn(fmt::format("visibility timeout {} s ({}) is shorter than --shutdown-timeout {} s",
                            visibility, from, o.shutdown_timeout),
                "messages still in hand at a stop may be delivered to another consumer meanwhile; raise the "
                "visibility timeout or lower the shutdown timeout");
  } else {
    report.Pass(
        fmt::format("visibility timeout {} s ({}): the heartbeat extends messages in hand every {} s, and "
                    "the shutdown timeout ({} s) fits in it",
                    visibility, from, std::max(1, visibility / 2), o.shutdown_timeout));
  }

  std::string redrive = attribute("RedrivePolicy");
  if (redrive.empty()) {
    report.Warn(
        "no redrive policy (dead-letter queue)",
        "a message that can never be processed is received again and again until its retention period ends; "
        "set a RedrivePolicy with a maxReceiveCount above --max-receives");
  } else {
    // {"deadLetterTargetArn":"arn:...","maxReceiveCount":"5"}: AWS sends the count as a string.
    simdjson::dom::parser parser;
    simdjson::padded_string text(redrive);
    simdjson::dom::element policy, count;
    std::string_view dlq, count_text;
    int64_t max_receive = -1;
    if (parser.parse(text).get(policy) == simdjson::SUCCESS &&
        policy["deadLetterTargetArn"].get(dlq) == simdjson::SUCCESS &&
        policy["maxReceiveCount"].get(count) == simdjson::SUCCESS) {
      if (count.is_int64()) max_receive = count.get_int64().value_unsafe();
      if (count.get(count_text) == simdjson::SUCCESS)
        max_receive = std::atoll(std::string(count_text).c_str());
    }
    std::string what =
        fmt::format("redrive policy: dead-letter queue {} after {} receives", dlq, max_receive);
    if (max_receive < 0) {
      report.Warn("redrive policy", "set, but not understood: " + redrive.substr(0, 200));
    } else if (o.max_receives > 0 && max_receive <= o.max_receives) {
      report.Warn(what,
                  fmt::format("SQS moves a message away by its {}th delivery, before sqs2pg would make it a "
                              "reject (--max-receives {}); raise maxReceiveCount above it",
                              max_receive, o.max_receives));
    } else {
      report.Pass(what);
    }
  }

  sqs::DeleteEntry bogus_delete{"probe", "sqs2pg-check-not-a-receipt-handle"};
  ProbePermission(report, "sqs:DeleteMessage", [&] {
    return (*client)->DeleteMessageBatch(*url, std::span<const sqs::DeleteEntry>(&bogus_delete, 1));
  });
  sqs::VisibilityEntry bogus_visibility{"probe", "sqs2pg-check-not-a-receipt-handle", 30};
  ProbePermission(report, "sqs:ChangeMessageVisibility", [&] {
    return (*client)->ChangeMessageVisibilityBatch(
        *url, std::span<const sqs::VisibilityEntry>(&bogus_visibility, 1));
  });
  report.NotChecked(
      "sqs:ReceiveMessage (a receive hides a message and counts towards its maxReceiveCount; `sqs2pg run "
      "--dry-run` "
      "exercises it)");
}

void CheckPostgres(Report& report, const RunOptions& o) {
  auto sink = sink::PostgresSink::Connect({o.db, o.table});
  if (!sink.ok()) {
    return report.Fail("Postgres", sink.status().message() + "; check --db (or SQS2PG_DB, PG* variables)");
  }
  report.Pass(fmt::format("Postgres reachable at {}", (*sink)->ServerName()));
  auto exist = (*sink)->TablesExist();
  if (!exist.ok()) return report.Fail("Postgres tables", exist.status().message());
  if (!*exist) {
    report.Warn(fmt::format("table {} (or its _ledger or _rejects) does not exist yet", o.table),
                fmt::format("run creates them at start if its role may CREATE in the schema; otherwise a DBA "
                            "applies `sqs2pg schema --table {} --role ROLE`",
                            o.table));
    return;
  }
  auto shape = (*sink)->Inspect();
  if (!shape.ok()) return report.Fail(fmt::format("table {}", o.table), shape.status().message());
  report.Pass(fmt::format("table {} has the columns sqs2pg loads, of usable types", o.table));
  if (Status st = (*sink)->CheckPrivileges(); !st.ok())
    return report.Fail("Postgres privileges", st.message());
  report.Pass(
      fmt::format("the role may load: TEMPORARY on the database, INSERT on {0}, SELECT and INSERT on "
                  "{0}_ledger, INSERT on {0}_rejects",
                  o.table));
}

int Check(const RunOptions& o) {
  Report report;
  auto keyring = LoadKeyring(o.key_file);
  if (keyring.ok()) {
    report.Pass(fmt::format("masking key: {} key(s), the active one {}", keyring->keys().size(),
                            keyring->active().id));
  } else {
    report.Fail("masking key", keyring.status().message());
  }

  auto config = MakeClientConfig(o.queue);
  if (!config.ok()) {
    report.Fail("AWS credentials", config.status().message());
  } else {
    report.Pass("AWS credentials from " + config->credential_cache->source());
    std::string sts = aws::StsEndpointUrl(aws::ProcessEnvironment(), config->region);
    auto identity = aws::GetCallerIdentity(
        sts, config->region, *config->credential_cache->Current().credentials, std::chrono::seconds(10));
    if (identity.ok()) {
      report.Pass(fmt::format("STS GetCallerIdentity: {} (account {})", identity->arn, identity->account));
    } else {
      report.Fail("STS GetCallerIdentity",
                  identity.status().message() +
                      "; the credentials are not accepted (or set AWS_ENDPOINT_URL_STS "
                      "for an STS that is not AWS's)");
    }
    CheckQueue(report, o, *config);
  }
  CheckPostgres(report, o);
  std::cout << (report.failures() == 0 ? "all checks passed\n"
                                       : fmt::format("{} check(s) failed\n", report.failures()))
            << std::flush;
  return report.failures() == 0 ? kExitOk : kExitFailure;
}

}  // namespace

Command AddCheckCommand(CLI::App& app) {
  auto o = std::make_shared<RunOptions>();
  CLI::App* cmd = app.add_subcommand(
      "check",
      "Preflight: with the configuration run would use, check the key, the AWS credentials, the queue and "
      "its "
      "settings, the SQS permissions that can be checked harmlessly, Postgres, the table and its privileges. "
      "Exit 0 when all hold");
  AddRunOptions(*cmd, *o);
  return {cmd, [o]() { return Check(*o); }};
}

}  // namespace sqs2pg::cli
