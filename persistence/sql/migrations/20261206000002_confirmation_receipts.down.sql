ALTER TABLE confirmations DROP COLUMN consumed_at;
ALTER TABLE confirmations DROP COLUMN approved_at;
ALTER TABLE confirmations DROP COLUMN match_failures;
ALTER TABLE confirmations DROP COLUMN match_code_hash;
ALTER TABLE confirmations DROP COLUMN action_hash;
