CREATE TABLE identities (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  email VARCHAR(320) NOT NULL,
  email_normalized VARCHAR(320) NOT NULL,
  password_hash TEXT NOT NULL DEFAULT '',
  traits TEXT NOT NULL DEFAULT '{}',
  permissions TEXT NOT NULL DEFAULT '[]',
  is_super_admin BOOLEAN NOT NULL DEFAULT FALSE,
  state VARCHAR(16) NOT NULL DEFAULT 'active',
  totp_secret TEXT NULL,
  totp_last_step BIGINT NOT NULL DEFAULT 0,
  passkey_prompt_status VARCHAR(16) NOT NULL DEFAULT 'pending',
  created_at TIMESTAMP NOT NULL,
  updated_at TIMESTAMP NOT NULL
);
CREATE UNIQUE INDEX identities_email_normalized_idx ON identities (email_normalized);
