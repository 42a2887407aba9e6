//! Who is calling, as IDM describes it: the [`SecurityContext`] (`authenticationId` plus the
//! `authorization` map), the credentials a request presents, and the signed session that carries
//! a context between requests. Checking credentials is `service::login`'s job.

pub mod session;

use percent_encoding::percent_decode_str;
use serde::{Deserialize, Serialize};

pub use crate::config::profile::ROLE_AUTHORIZED;

/// The internal administrator.
pub const ADMIN_USER: &str = "openidm-admin";
/// The anonymous static user.
pub const ANONYMOUS_USER: &str = "anonymous";
/// Role of administrators.
pub const ROLE_ADMIN: &str = "internal/role/openidm-admin";
/// Role of the anonymous user (self-registration).
pub const ROLE_REG: &str = "internal/role/openidm-reg";

/// The `authorization` part of a security context.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Authorization {
    /// `_id` of the authenticated object.
    pub id: String,
    /// Its collection: `internal/user` or `managed/user`.
    pub component: String,
    /// Role references.
    pub roles: Vec<String>,
    /// The module that verified the credentials.
    pub module_id: String,
    /// The credential query used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_id: Option<String>,
    /// Protected attributes (managed users).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protected_attribute_list: Option<Vec<String>>,
    /// True while progressive-profile processes are pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processes_required: Option<bool>,
    /// The pending progressive-profile processes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_profile_processes: Option<Vec<String>>,
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecurityContext {
    /// The login name supplied.
    pub authentication_id: String,
    /// What it resolved to.
    pub authorization: Authorization,
}

impl SecurityContext {
    /// True when the caller holds `role` (case-insensitive).
    pub fn has_role(&self, role: &str) -> bool {
        self.authorization.roles.iter().any(|r| r.eq_ignore_ascii_case(role))
    }

    /// True for administrators.
    pub fn is_admin(&self) -> bool {
        self.has_role(ROLE_ADMIN)
    }

    /// The caller's own resource path (`managed/user/<id>`).
    pub fn own_path(&self) -> String {
        format!("{}/{}", self.authorization.component, self.authorization.id)
    }

    /// True for a managed user.
    pub fn is_managed_user(&self) -> bool {
        self.authorization.component.starts_with("managed/")
    }
}

/// Credentials presented with a request.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    /// The password.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// IDM's login context body (`_id: login`, the `authorization` map, `authenticationId`), with
/// keys in IDM's order.
pub fn login_json(
    context: &SecurityContext,
    auth_login: bool,
    ip_address: &str,
    roles_property: &str,
) -> serde_json::Value {
    let auth = &context.authorization;
    let mut authorization = serde_json::Map::new();
    authorization.insert("userRolesProperty".into(), roles_property.into());
    if let Some(required) = auth.processes_required {
        authorization.insert("processesRequired".into(), required.into());
    }
    authorization.insert("component".into(), auth.component.clone().into());
    authorization.insert("authLogin".into(), auth_login.into());
    authorization.insert("authenticationIdProperty".into(), "username".into());
    authorization.insert("roles".into(), auth.roles.clone().into());
    authorization.insert("ipAddress".into(), ip_address.into());
    if let Some(protected) = &auth.protected_attribute_list {
        authorization.insert("protectedAttributeList".into(), protected.clone().into());
    }
    if let Some(processes) = &auth.required_profile_processes {
        authorization.insert("requiredProfileProcesses".into(), processes.clone().into());
    }
    authorization.insert("id".into(), auth.id.clone().into());
    authorization.insert("moduleId".into(), auth.module_id.clone().into());
    if let Some(query_id) = &auth.query_id {
        authorization.insert("queryId".into(), query_id.clone().into());
    }
    serde_json::json!({
        "_id": "login",
        "authorization": authorization,
        "authenticationId": context.authentication_id,
    })
}

/// A client address as IDM prints it (IPv6 uncompressed, e.g. `0:0:0:0:0:0:0:1`).
pub fn format_ip(address: std::net::IpAddr) -> String {
    match address {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => v6
                .segments()
                .iter()
                .map(|segment| format!("{segment:x}"))
                .collect::<Vec<_>>()
                .join(":"),
        },
    }
}

/// Decodes an RFC 5987 header value (`UTF-8''%E2%82%AC`); other values are returned as sent.
pub fn decode_rfc5987(value: &str) -> String {
    let Some((charset, rest)) = value.split_once('\'') else {
        return value.to_owned();
    };
    let Some((_language, encoded)) = rest.split_once('\'') else {
        return value.to_owned();
    };
    if charset.eq_ignore_ascii_case("utf-8") {
        percent_decode_str(encoded).decode_utf8_lossy().into_owned()
    } else {
        value.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_print_like_idm() {
        assert_eq!(format_ip("::1".parse().unwrap()), "0:0:0:0:0:0:0:1");
        assert_eq!(format_ip("127.0.0.1".parse().unwrap()), "127.0.0.1");
        assert_eq!(format_ip("::ffff:10.0.0.1".parse().unwrap()), "10.0.0.1");
    }

    #[test]
    fn rfc5987_values_are_decoded() {
        assert_eq!(decode_rfc5987("UTF-8''b%C3%A9a"), "béa");
        assert_eq!(decode_rfc5987("utf-8'en'%E2%82%AC"), "€");
        assert_eq!(decode_rfc5987("plain"), "plain");
    }
}
