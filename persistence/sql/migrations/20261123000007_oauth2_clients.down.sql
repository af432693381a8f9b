DROP TABLE oauth2_consents; DROP TABLE oauth2_flows; DROP TABLE oauth2_clients;
