#pragma once
// The login event as a mapping: what `run` uses without --mapping (stage 3), equal column for
// column to examples/logins.toml, and to today's LoginTransform for the same keyring (same values,
// same rejects, same reasons: login_equivalence_test.cc holds both to that).

#include "transform/login_transform.h"
#include "transform/mapping/mapped_transform.h"
#include "transform/mapping/mapping.h"

namespace sqs2pg::transform::mapping {

// user_id, device_type, masked_ip, masked_device_id, locale, app_version, create_date,
// masked_ip_key_id: the table `sqs2pg schema` creates today.
Mapping LoginMapping();
// The live table's sizes and app_version type as the plan's overrides, as LoginTransform takes
// them through ColumnLimits.
CompileOptions LoginCompileOptions(const ColumnLimits& limits);

}  // namespace sqs2pg::transform::mapping
