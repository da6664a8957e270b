#include "cli/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <utility>

#include "cli/app.h"
#include "cli/options.h"
#include "sink/postgres/postgres_sink.h"
#include "transform/mapping/mapping.h"

namespace sqs2pg::cli {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

// Every variable a test sets is unset again, so tests do not leak into each other.
class ConfigTest : public ::testing::Test {
 protected:
  void TearDown() override {
    for (const std::string& name : set_) unsetenv(name.c_str());
    std::filesystem::remove_all(dir_);
  }
  void SetEnv(const std::string& name, const std::string& value) {
    setenv(name.c_str(), value.c_str(), 1);
    set_.push_back(name);
  }
  std::string File(const std::string& text) {
    std::filesystem::create_directories(dir_);
    std::string path = dir_ + "/sqs2pg.toml";
    std::ofstream(path) << text;
    return path;
  }
  Status Parse(std::vector<std::string> args) {
    std::vector<const char*> argv = {"sqs2pg"};
    for (const std::string& a : args) argv.push_back(a.c_str());
    app_.cli.parse(static_cast<int>(argv.size()), argv.data());
    return ApplyLayers(app_.cli, app_.views, app_.provenance);
  }
  CLI::Option* Run(const std::string& flag) { return app_.cli.get_subcommand("run")->get_option(flag); }
  const Origin& OriginOf(CLI::Option* option) { return app_.provenance.origins.at(option); }

  App app_;
  std::string dir_ =
      std::filesystem::temp_directory_path() / ("sqs2pg_config_test_" + std::to_string(getpid()));
  std::vector<std::string> set_;
};

std::string Upper(std::string_view name) {
  std::string out = "SQS2PG_";
  for (char c : name) out.push_back(c == '-' ? '_' : static_cast<char>(std::toupper(c)));
  return out;
}

TEST_F(ConfigTest, EveryOptionIsDescribedOnceWithHelpUnitAndDefault) {
  for (const OptionSpec& spec : AllOptions()) {
    SCOPED_TRACE(std::string(spec.name));
    EXPECT_GT(spec.help.size(), 10u);
    EXPECT_TRUE(spec.default_value.empty() != spec.default_note.empty())
        << "a default, or what happens instead";
    EXPECT_EQ(spec.value_name.empty(), spec.kind == Kind::kBool);
    if (spec.kind == Kind::kInteger) {
      EXPECT_NE(spec.unit, Unit::kNone);
    }
    // Systematic names, except the variables the AWS SDKs already define.
    std::vector<std::string> env = EnvNames(spec);
    ASSERT_FALSE(env.empty());
    if (!env[0].starts_with("AWS_")) {
      EXPECT_EQ(env[0], Upper(spec.name));
    }
    int count = 0;
    for (const OptionSpec& other : AllOptions()) count += other.name == spec.name;
    EXPECT_EQ(count, 1);
  }
}

// The registry and CLI11 agree: every option a subcommand has is listed for its table, and every
// listed option is bound, in the subcommand and in its `config` view.
TEST_F(ConfigTest, TheRegistryMatchesEveryCommand) {
  std::vector<CLI::App*> commands = app_.cli.get_subcommands([](CLI::App*) { return true; });
  for (CLI::App* view : app_.views->get_subcommands([](CLI::App*) { return true; })) commands.push_back(view);
  commands.push_back(&app_.cli);
  for (CLI::App* cmd : commands) {
    if (cmd == app_.views) continue;  // its own --markdown only picks what to print
    std::string_view section = cmd == &app_.cli ? "" : FileSection(cmd->get_name());
    SCOPED_TRACE(cmd->get_name());
    for (const CLI::Option* option : cmd->get_options()) {
      if (option->get_positional() || option->get_lnames().empty()) continue;
      std::string name = option->get_lnames()[0];
      if (name == "help" || name == "version") continue;
      const OptionSpec* found = nullptr;
      for (const OptionSpec& spec : AllOptions()) {
        if (spec.name == name) found = &spec;
      }
      ASSERT_NE(found, nullptr) << "--" << name << " is not in the registry (src/cli/options.cc)";
      EXPECT_TRUE(InSection(*found, section)) << "--" << name;
    }
    for (const OptionSpec& spec : AllOptions()) {
      if (InSection(spec, section)) {
        EXPECT_NE(cmd->get_option_no_throw("--" + std::string(spec.name)), nullptr) << spec.name;
      }
    }
  }
}

TEST_F(ConfigTest, FlagsBeatVariablesBeatTheFileBeatsDefaults) {
  std::string path =
      File("log-level = \"warn\"\n[run]\nbatch-size = 7\nreceivers = 3\nqueue = \"from-file\"\n");
  SetEnv("SQS2PG_RECEIVERS", "5");
  SetEnv("SQS2PG_QUEUE", "from-env");
  ASSERT_TRUE(Parse({"run", "--config", path, "--queue", "from-flag"}).ok());
  EXPECT_EQ(Run("--batch-size")->as<int>(), 7);
  EXPECT_EQ(OriginOf(Run("--batch-size")).where, path + ":3");
  EXPECT_EQ(Run("--receivers")->as<int>(), 5);
  EXPECT_EQ(OriginOf(Run("--receivers")).where, "SQS2PG_RECEIVERS");
  EXPECT_EQ(Run("--queue")->as<std::string>(), "from-flag");
  EXPECT_EQ(OriginOf(Run("--queue")).layer, Origin::Layer::kFlag);
  EXPECT_EQ(OriginOf(Run("--db-connections")).layer, Origin::Layer::kDefault);
  EXPECT_EQ(app_.log_level, "warn");
}

TEST_F(ConfigTest, KeyringTextInTheEnvironmentBeatsAKeyFileFromTheFile) {
  std::string path = File("[run]\nkey-file = \"/etc/sqs2pg/keyring\"\n");
  SetEnv("SQS2PG_KEYS", "sqs2pg-keyring-v1 not-a-real-key");
  ASSERT_TRUE(Parse({"run", "--config", path}).ok());
  EXPECT_EQ(Run("--key-file")->count(), 0u);  // left unset: LoadKeyring then reads SQS2PG_KEYS
  EXPECT_EQ(OriginOf(Run("--key-file")).where, "SQS2PG_KEYS");
}

TEST_F(ConfigTest, TheConfigFileCanComeFromTheEnvironmentAndGoAfterTheSubcommand) {
  std::string path = File("[run]\nfollow = true\n");
  SetEnv("SQS2PG_CONFIG", path);
  ASSERT_TRUE(Parse({"run", "--log-format", "json"}).ok());
  EXPECT_TRUE(Run("--follow")->as<bool>());
  EXPECT_EQ(app_.log_format, "json");
}

TEST_F(ConfigTest, AnUnknownKeyNamesItsFileAndLine) {
  std::string path = File("[run]\nbatch-size = 5\nbatch_size = 5\n");
  Status st = Parse({"run", "--config", path});
  EXPECT_EQ(st.code(), Status::Code::kInvalidInput);
  EXPECT_THAT(st.message(), AllOf(HasSubstr(path + ":3"), HasSubstr("unknown key [run] batch_size"),
                                  HasSubstr("did you mean batch-size?")));
}

TEST_F(ConfigTest, AnOptionInTheWrongTableIsUnknownThere) {
  std::string path = File("[send]\n\nbatch-size = 5\n");
  Status st = Parse({"send", "--config", path, path});
  EXPECT_THAT(st.message(), AllOf(HasSubstr(path + ":3"), HasSubstr("belongs in [run], [rekey])")));
  App again;
  std::string top_level = File("queue = \"q\"\n");
  std::vector<const char*> args = {"sqs2pg", "schema", "--config", top_level.c_str()};
  again.cli.parse(4, args.data());
  EXPECT_THAT(ApplyLayers(again.cli, again.views, again.provenance).message(),
              HasSubstr("unknown key queue (queue belongs in [run], [send])"));
  std::string top = File("[runn]\nx = 1\n");
  App fresh;
  std::vector<const char*> argv = {"sqs2pg", "schema", "--config", top.c_str()};
  fresh.cli.parse(4, argv.data());
  EXPECT_THAT(ApplyLayers(fresh.cli, fresh.views, fresh.provenance).message(),
              AllOf(HasSubstr(top + ":1"), HasSubstr("unknown table [runn]")));
}

TEST_F(ConfigTest, AValueOfTheWrongTypeOrOutOfRangeNamesTheKeyAndLine) {
  std::string path = File("[run]\nqueue = \"q\"\nbatch-size = \"500\"\n");
  EXPECT_THAT(Parse({"run", "--config", path}).message(),
              AllOf(HasSubstr(path + ":3"), HasSubstr("[run] batch-size"),
                    HasSubstr("expected an integer, got a string")));
}

TEST_F(ConfigTest, AValueOutOfRangeNamesTheKeyAndLine) {
  std::string path = File("[run]\n\n\nreceivers = 1000\n");
  Status st = Parse({"schema", "--config", path});  // the whole file is checked, whatever runs
  EXPECT_EQ(st.code(), Status::Code::kInvalidInput);
  EXPECT_THAT(st.message(), AllOf(HasSubstr(path + ":4"), HasSubstr("[run] receivers"), HasSubstr("1000")));
}

TEST_F(ConfigTest, ANotAMemberValueNamesTheKey) {
  std::string path = File("log-format = \"yaml\"\n");
  EXPECT_THAT(Parse({"schema", "--config", path}).message(),
              AllOf(HasSubstr(path + ":1"), HasSubstr("log-format")));
}

TEST_F(ConfigTest, ASyntaxErrorNamesTheLine) {
  std::string path = File("[run]\nbatch-size = = 5\n");
  EXPECT_THAT(Parse({"run", "--config", path}).message(), HasSubstr(path + ":2:"));
}

TEST_F(ConfigTest, AMissingFileIsAnError) {
  EXPECT_EQ(Parse({"schema", "--config", dir_ + "/none.toml"}).code(), Status::Code::kInvalidInput);
}

TEST_F(ConfigTest, ABadVariableNamesTheVariable) {
  SetEnv("SQS2PG_BATCH_SIZE", "lots");
  Status st = Parse({"run"});
  EXPECT_EQ(st.code(), Status::Code::kInvalidInput);
  EXPECT_THAT(st.message(), HasSubstr("environment variable SQS2PG_BATCH_SIZE"));
  // Only the subcommand that runs reads its variables.
  App other;
  std::vector<const char*> argv = {"sqs2pg", "schema"};
  other.cli.parse(2, argv.data());
  EXPECT_TRUE(ApplyLayers(other.cli, other.views, other.provenance).ok());
}

TEST_F(ConfigTest, ARequiredOptionMayComeFromTheFile) {
  EXPECT_THAT(Parse({"keygen"}).message(), HasSubstr("keygen needs --out"));
  App second;
  std::string path = File("[keygen]\nout = \"/tmp/k\"\n");
  std::vector<const char*> argv = {"sqs2pg", "keygen", "--config", path.c_str()};
  second.cli.parse(4, argv.data());
  EXPECT_TRUE(ApplyLayers(second.cli, second.views, second.provenance).ok());
}

TEST_F(ConfigTest, AwsVariablesFillTheirOptions) {
  SetEnv("AWS_ENDPOINT_URL", "http://127.0.0.1:9");
  SetEnv("AWS_ENDPOINT_URL_SQS", "http://127.0.0.1:8");
  ASSERT_TRUE(Parse({"run"}).ok());
  EXPECT_EQ(Run("--endpoint-url")->as<std::string>(), "http://127.0.0.1:8");
  EXPECT_EQ(OriginOf(Run("--endpoint-url")).where, "AWS_ENDPOINT_URL_SQS");
}

TEST_F(ConfigTest, TheEffectiveConfigSaysWhereEachValueCameFromAndHidesSecrets) {
  std::string path = File("[run]\nbatch-size = 9\n");
  SetEnv("SQS2PG_DB", "host=db.internal user=etl password=hunter2 dbname=analytics");
  SetEnv("SQS2PG_KEYS", "k1:c2VjcmV0LWtleS1tYXRlcmlhbA==");
  SetEnv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY");
  ASSERT_TRUE(Parse({"config", "run", "--config", path, "--receivers", "4"}).ok());
  std::string out = EffectiveConfig(app_.cli, *app_.views, app_.provenance);
  EXPECT_THAT(out, HasSubstr("batch-size = 9  # " + path + ":2\n"));
  EXPECT_THAT(out, HasSubstr("receivers = 4  # flag\n"));
  EXPECT_THAT(out, HasSubstr("db-connections = 2  # default\n"));
  EXPECT_THAT(out, HasSubstr("# visibility-timeout is not set: the queue's"));
  EXPECT_THAT(out, AllOf(HasSubstr("host=db.internal"), HasSubstr("password=[redacted]"),
                         HasSubstr("dbname=analytics"), HasSubstr("\"  # env SQS2PG_DB\n")));
  EXPECT_THAT(out, HasSubstr("# SQS2PG_KEYS = [redacted]"));
  EXPECT_THAT(out, HasSubstr("# AWS_SECRET_ACCESS_KEY = [redacted]"));
  EXPECT_THAT(out, AllOf(Not(HasSubstr("hunter2")), Not(HasSubstr("c2VjcmV0")), Not(HasSubstr("wJalr"))));
  EXPECT_THAT(out, Not(HasSubstr("[send]")));  // only the view given
}

// Issue 18: the mapping may be written inline as [run.mapping]; `config` shows the one in effect,
// column by column, and a mistake in it names the config file's line.
TEST_F(ConfigTest, AnInlineMappingIsShownColumnByColumnAndItsErrorsNameTheLine) {
  std::string path = File(
      "[run]\nbatch-size = 9\n\n[run.mapping]\ntable = \"clicks\"\n[[run.mapping.column]]\nname = "
      "\"page\"\nfrom = \"/page\"\ntype = \"text\"\nrequired = true\n[[run.mapping.column]]\nname = "
      "\"email\"\nfrom = \"/who/email\"\ntype = \"text\"\nmask = \"siv\"\n");
  ASSERT_TRUE(Parse({"config", "run", "--config", path}).ok());
  EXPECT_EQ(Run("--mapping")->as<std::string>(), path + "#run.mapping");
  std::string out = EffectiveConfig(app_.cli, *app_.views, app_.provenance);
  EXPECT_THAT(out,
              HasSubstr("# the mapping in effect: table clicks, envelope none, unknown_fields ignore\n"));
  EXPECT_THAT(out, HasSubstr("#   page text <- /page, required\n"));
  EXPECT_THAT(out, HasSubstr("#   email text <- /who/email, masked siv\n"));
  auto loaded = transform::mapping::LoadMappingFile(path + "#run.mapping");
  ASSERT_TRUE(loaded.ok()) << loaded.status().message();
  EXPECT_EQ(loaded->columns.size(), 2u);

  std::string bad =
      File("[run.mapping]\n[[run.mapping.column]]\nname = \"page\"\nfrom = \"page\"\ntype = \"text\"\n");
  auto refused = transform::mapping::LoadMappingFile(bad + "#run.mapping");
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(refused.status().message(), HasSubstr(bad + ":4"));
}

TEST_F(ConfigTest, TheLoginTableIsTheMappingInEffectWithoutOne) {
  ASSERT_TRUE(Parse({"config", "run"}).ok());
  EXPECT_THAT(EffectiveConfig(app_.cli, *app_.views, app_.provenance),
              HasSubstr("# the mapping in effect: the built-in login table"));
}

TEST_F(ConfigTest, AUriPasswordIsRedactedToo) {
  SetEnv("SQS2PG_DB", "postgresql://etl:hunter2@db.internal:5433/analytics?sslmode=verify-full");
  ASSERT_TRUE(Parse({"config"}).ok());
  std::string out = EffectiveConfig(app_.cli, *app_.views, app_.provenance);
  EXPECT_THAT(
      out, AllOf(HasSubstr("password=[redacted]"), HasSubstr("host=db.internal"), Not(HasSubstr("hunter2"))));
  EXPECT_THAT(out, AllOf(HasSubstr("[run]"), HasSubstr("[send]"), HasSubstr("[schema]")));
}

// Issue 17 item 13: a command line CLI11 cannot place is not repeated back with its secrets.
class SecretsTest : public ConfigTest {
 protected:
  // Main's exit code and what it wrote to stderr.
  std::pair<int, std::string> RunMain(std::vector<std::string> args) {
    std::vector<const char*> argv = {"sqs2pg"};
    for (const std::string& a : args) argv.push_back(a.c_str());
    App app;
    ::testing::internal::CaptureStderr();
    int code = Main(app, static_cast<int>(argv.size()), argv.data());
    return {code, ::testing::internal::GetCapturedStderr()};
  }
};

TEST_F(SecretsTest, AMistypedCommandLineNeverEchoesAPassword) {
  // `config` takes no --db itself (its subcommands do): CLI11 calls both arguments unexpected.
  auto [code, err] = RunMain({"config", "--db", "host=db.internal password=hunter2 sslpassword=tiger7"});
  EXPECT_EQ(code, 2);
  EXPECT_THAT(err, HasSubstr("not expected"));
  EXPECT_THAT(err, AllOf(Not(HasSubstr("hunter2")), Not(HasSubstr("tiger7"))));
  auto [code2, err2] = RunMain({"run", "extra", "postgresql://etl:hunter2@db/x"});
  EXPECT_EQ(code2, 2);
  EXPECT_THAT(err2, Not(HasSubstr("hunter2")));
  // A value CLI11 quotes in a conversion error is left out too.
  auto [code3, err3] = RunMain({"run", "--batch-size", "password=hunter2"});
  EXPECT_EQ(code3, 2);
  EXPECT_THAT(err3, Not(HasSubstr("hunter2")));
}

TEST_F(SecretsTest, EveryConninfoOptionLibpqHidesIsRedacted) {
  std::string shown = sink::RedactedConninfo("host=db.internal password=hunter2 sslpassword=tiger7 user=etl");
  EXPECT_THAT(shown, AllOf(HasSubstr("host=db.internal"), HasSubstr("user=etl"),
                           HasSubstr("password=[redacted]"), HasSubstr("sslpassword=[redacted]")));
  EXPECT_THAT(shown, AllOf(Not(HasSubstr("hunter2")), Not(HasSubstr("tiger7"))));
}

TEST_F(SecretsTest, ImportHexLeavesTheEnvironmentOnceRead) {
  std::filesystem::create_directories(dir_);
  SetEnv("SQS2PG_IMPORT_HEX", std::string(128, 'a'));
  auto [code, err] = RunMain({"keygen", "--out", dir_ + "/keys"});
  EXPECT_EQ(code, 0) << err;
  EXPECT_EQ(std::getenv("SQS2PG_IMPORT_HEX"), nullptr);
  EXPECT_THAT(err, Not(HasSubstr(std::string(32, 'a'))));
}

// Issue 17 item 14: an exception that escapes a command does not abort (a core file of the keys)
// and its text, which may quote data, is not printed.
TEST(MainTest, AnEscapingExceptionExits70WithoutItsText) {
  const char* argv[] = {"sqs2pg"};
  ::testing::internal::CaptureStderr();
  int code = GuardedMain([](int, const char* const*) -> int { throw std::runtime_error("ip 203.0.113.7"); },
                         1, argv);
  std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(code, 70);
  EXPECT_THAT(err, HasSubstr("internal error"));
  EXPECT_THAT(err, Not(HasSubstr("203.0.113.7")));
}

}  // namespace
}  // namespace sqs2pg::cli
