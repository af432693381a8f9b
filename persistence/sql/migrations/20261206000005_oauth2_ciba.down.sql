DROP TABLE oauth2_ciba_requests;
ALTER TABLE oauth2_clients DROP COLUMN backchannel_token_delivery_mode;
