DROP TABLE login_flows; DROP TABLE recovery_codes;
