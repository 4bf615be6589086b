-- Indexes for the security team's history queries (GET /admin/login-events): each filter finds
-- its rows, newest first, without scanning the log. Usernames are matched as the gateway
-- normalizes them (NFKC, lower case, trimmed), whatever was typed.
CREATE INDEX audit_log_username_idx ON audit_log (lower(normalize(btrim(username), NFKC)), seq DESC) WHERE username IS NOT NULL;
CREATE INDEX audit_log_user_id_idx ON audit_log (user_id, seq DESC) WHERE user_id IS NOT NULL;
-- B-tree on inet serves both an exact address and a CIDR block (ip <<= block is a range scan).
CREATE INDEX audit_log_ip_idx ON audit_log (ip, seq DESC) WHERE ip IS NOT NULL;
CREATE INDEX audit_log_device_id_idx ON audit_log (device_id, seq DESC) WHERE device_id IS NOT NULL;
CREATE INDEX audit_log_event_type_idx ON audit_log (event_type, seq DESC);
CREATE INDEX audit_log_occurred_at_idx ON audit_log (occurred_at);
