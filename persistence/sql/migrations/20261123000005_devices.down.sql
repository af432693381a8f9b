DROP TABLE confirmations; DROP TABLE device_challenges; DROP TABLE devices;
