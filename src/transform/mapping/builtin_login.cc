#include "transform/mapping/builtin_login.h"

#include <utility>

namespace sqs2pg::transform::mapping {
namespace {

ColumnSpec Column(std::string name, std::string from, ColumnType type, std::string label) {
  ColumnSpec c;
  c.name = std::move(name);
  c.from = ParseSource(from).value();
  c.type = type;
  c.label = std::move(label);
  return c;
}

ColumnType Varchar(size_t n) { return {TypeKind::kVarchar, n}; }

}  // namespace

Mapping LoginMapping() {
  Mapping m;
  m.origin = "built-in login mapping";
  m.table = "user_logins";
  m.envelope = Envelope::kNone;  // today an SNS-wrapped login is a reject, and stays one
  m.unknown_fields = UnknownFields::kIgnore;

  // Reasons name the JSON field, as they always have ("missing field ip").
  ColumnSpec user_id = Column("user_id", "/user_id", Varchar(128), "field user_id");
  user_id.required = user_id.non_empty = true;
  ColumnSpec device_type = Column("device_type", "/device_type", Varchar(32), "field device_type");
  ColumnSpec masked_ip = Column("masked_ip", "/ip", Varchar(256), "field ip");
  masked_ip.required = masked_ip.non_empty = true;
  masked_ip.input = ColumnType{TypeKind::kInet, 0};
  masked_ip.mask = MaskSpec{};  // the keyring's (or --ip-mask's) mode for field ip
  masked_ip.mask_field = "ip";
  masked_ip.key_id_column = true;
  ColumnSpec masked_device_id = Column("masked_device_id", "/device_id", Varchar(256), "field device_id");
  masked_device_id.required = masked_device_id.non_empty = true;
  masked_device_id.mask = MaskSpec{};
  masked_device_id.mask_field = "device_id";
  ColumnSpec locale = Column("locale", "/locale", Varchar(32), "field locale");
  ColumnSpec app_version = Column("app_version", "/app_version", Varchar(15), "field app_version");
  app_version.format = ValueFormat::kVersion;  // integer form when the live column is an integer
  ColumnSpec create_date =
      Column("create_date", "$sent_timestamp", ColumnType{TypeKind::kDate, 0}, "message's SentTimestamp");
  create_date.required = true;
  create_date.format = ValueFormat::kEpochMs;
  m.columns = {std::move(user_id), std::move(device_type), std::move(masked_ip),  std::move(masked_device_id),
               std::move(locale),  std::move(app_version), std::move(create_date)};
  return m;
}

CompileOptions LoginCompileOptions(const ColumnLimits& limits) {
  CompileOptions o;
  o.live = {{"user_id", Varchar(limits.user_id)},
            {"device_type", Varchar(limits.device_type)},
            {"masked_ip", Varchar(limits.masked_value)},
            {"masked_device_id", Varchar(limits.masked_value)},
            {"locale", Varchar(limits.locale)},
            {"app_version", limits.app_version_is_integer ? ColumnType{TypeKind::kInteger, 0}
                                                          : Varchar(limits.app_version)}};
  return o;
}

}  // namespace sqs2pg::transform::mapping
