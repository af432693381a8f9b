DROP TABLE webauthn_sessions; DROP TABLE webauthn_credentials; DROP TABLE webauthn_user_handles;
