-- Issue 9: the action hash a challenge names, number matching (the code's hash and the
-- wrong tries), the approval time (the receipt's iat) and one-time consumption.
ALTER TABLE confirmations ADD COLUMN action_hash VARCHAR(64) NULL;
ALTER TABLE confirmations ADD COLUMN match_code_hash VARCHAR(64) NULL;
ALTER TABLE confirmations ADD COLUMN match_failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE confirmations ADD COLUMN approved_at TIMESTAMP NULL;
ALTER TABLE confirmations ADD COLUMN consumed_at TIMESTAMP NULL;
