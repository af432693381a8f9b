package config_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pvpipe/pvauth/driver/config"
)

var (
	secretA  = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" // 36
	secretB  = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	cipherK  = "0123456789abcdef0123456789abcdef" // 32
	fileSig  = "file-signature-key-0123456789-abcdef"
	adminKey = "admin-key-0123456789"
)

// env returns an Options.Env over the given variables only, so the test does not see
// the machine's environment.
func env(kv map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := kv[k]
		return v, ok
	}
}

// withSecrets adds valid secrets to kv.
func withSecrets(kv map[string]string) map[string]string {
	out := map[string]string{
		"SECRETS_DEFAULT":        secretA,
		"SECRETS_CIPHER":         cipherK,
		"SECRETS_FILE_SIGNATURE": fileSig,
	}
	for k, v := range kv {
		out[k] = v
	}
	return out
}

func load(t *testing.T, o config.Options) *config.Config {
	t.Helper()
	c, err := config.Load(o)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return c
}

func mustFail(t *testing.T, o config.Options, wants ...string) error {
	t.Helper()
	_, err := config.Load(o)
	if err == nil {
		t.Fatalf("Load succeeded, want an error mentioning %v", wants)
	}
	for _, w := range wants {
		if !strings.Contains(err.Error(), w) {
			t.Fatalf("error %q does not mention %q", err, w)
		}
	}
	return err
}

func TestDefaults(t *testing.T) {
	c := load(t, config.Options{Env: env(withSecrets(nil))})
	if c.Serve.Public.Port != 8080 || c.Serve.Admin.Port != 8081 || c.Serve.Admin.Host != "127.0.0.1" {
		t.Fatalf("serve defaults: %+v", c.Serve)
	}
	if c.PublicAddr() != "0.0.0.0:8080" || c.AdminAddr() != "127.0.0.1:8081" {
		t.Fatalf("addrs %s %s", c.PublicAddr(), c.AdminAddr())
	}
	if c.TTL.AccessToken != time.Hour || c.TTL.RefreshToken != 72*time.Hour || c.TTL.Challenge != 5*time.Minute {
		t.Fatalf("ttl defaults: %+v", c.TTL)
	}
	if !c.RateLimit.Enabled {
		t.Fatal("rate limiting is off by default")
	}
	if r := c.RateLimit.Rules["login"]; r.Limit != 10 || r.Window != 5*time.Minute {
		t.Fatalf("login rule: %+v", r)
	}
	if r := c.RateLimit.Rules["mobile_biometric"]; r.Limit != 3 || r.Window != time.Minute {
		t.Fatalf("mobile_biometric rule: %+v", r)
	}
	if c.Tokens.Algorithm != "ES256" || len(c.Tokens.Audience) != 1 || c.Tokens.Audience[0] != "pvpipe" {
		t.Fatalf("tokens: %+v", c.Tokens)
	}
	if a := c.Hashers.Argon2; a.MemoryKiB != 19456 || a.Iterations != 2 || a.Parallelism != 1 || a.KeyLength != 32 {
		t.Fatalf("argon2: %+v", a)
	}
	if c.Issuer() != "http://localhost:8080" {
		t.Fatalf("issuer %q", c.Issuer())
	}
	if c.Log.Level != "info" || c.Log.Format != "json" || c.Dev {
		t.Fatalf("log %+v dev %v", c.Log, c.Dev)
	}
	if len(c.Serve.Public.TrustedProxies) != 0 || len(c.Serve.Admin.APIKeys) != 0 {
		t.Fatalf("lists not empty: %+v", c.Serve)
	}
	if c.Secrets.Default[0] != secretA || c.Secrets.Cipher[0] != cipherK || c.Secrets.FileSignature != fileSig {
		t.Fatalf("secrets from the environment: %+v", c.Secrets)
	}
}

func TestEnvOverrides(t *testing.T) {
	c := load(t, config.Options{Env: env(withSecrets(map[string]string{
		"SERVE_PUBLIC_PORT":                 "9999",
		"SERVE_PUBLIC_HOST":                 "::1",
		"RATELIMIT_ENABLED":                 "false",
		"RATELIMIT_RULES_LOGIN_LIMIT":       "50",
		"RATELIMIT_RULES_OTP_VERIFY_WINDOW": "90s",
		"SECRETS_DEFAULT":                   secretA + "," + secretB,
		"SERVE_ADMIN_API_KEYS":              adminKey + ", " + adminKey + "-2",
		"SERVE_PUBLIC_TRUSTED_PROXIES":      "10.0.0.0/8,127.0.0.1",
		"TTL_ACCESS_TOKEN":                  "90m",
		"TTL_REFRESH_TOKEN":                 "1h30m10s",
		"HASHERS_ARGON2_PARALLELISM":        "4",
		"BIOMETRIC_KEYGEN_ENABLED":          "0",
		"URLS_ISSUER":                       "https://id.example.com/",
		"LOG_LEVEL":                         "debug",
	}))})
	if c.Serve.Public.Port != 9999 {
		t.Fatalf("port %d", c.Serve.Public.Port)
	}
	if c.PublicAddr() != "[::1]:9999" {
		t.Fatalf("ipv6 addr %q", c.PublicAddr())
	}
	if c.RateLimit.Enabled {
		t.Fatal("RATELIMIT_ENABLED=false ignored")
	}
	login := c.RateLimit.Rules["login"]
	if login.Limit != 50 || login.Window != 5*time.Minute {
		t.Fatalf("login rule %+v: the limit is overridden, the window kept", login)
	}
	if otp := c.RateLimit.Rules["otp_verify"]; otp.Window != 90*time.Second || otp.Limit != 5 {
		t.Fatalf("otp_verify rule %+v", otp)
	}
	if len(c.RateLimit.Rules) != 8 {
		t.Fatalf("overriding one rule lost the others: %+v", c.RateLimit.Rules)
	}
	if len(c.Secrets.Default) != 2 || c.Secrets.Default[0] != secretA || c.Secrets.Default[1] != secretB {
		t.Fatalf("secrets.default %q", c.Secrets.Default)
	}
	if len(c.Serve.Admin.APIKeys) != 2 || c.Serve.Admin.APIKeys[0] != adminKey || c.Serve.Admin.APIKeys[1] != adminKey+"-2" {
		t.Fatalf("api keys %q", c.Serve.Admin.APIKeys)
	}
	if len(c.Serve.Public.TrustedProxies) != 2 || c.Serve.Public.TrustedProxies[1] != "127.0.0.1" {
		t.Fatalf("trusted proxies %q", c.Serve.Public.TrustedProxies)
	}
	if c.TTL.AccessToken != 90*time.Minute || c.TTL.RefreshToken != time.Hour+30*time.Minute+10*time.Second {
		t.Fatalf("ttl %+v", c.TTL)
	}
	if c.Hashers.Argon2.Parallelism != 4 || c.Biometric.KeygenEnabled {
		t.Fatalf("argon2 %+v biometric %+v", c.Hashers.Argon2, c.Biometric)
	}
	if c.Issuer() != "https://id.example.com" || c.Log.Level != "debug" {
		t.Fatalf("issuer %q level %q", c.Issuer(), c.Log.Level)
	}
}

func TestEnvNames(t *testing.T) {
	for k, want := range map[string]string{
		"serve.public.port":           "SERVE_PUBLIC_PORT",
		"ratelimit.rules.login.limit": "RATELIMIT_RULES_LOGIN_LIMIT",
		"dsn":                         "DSN",
	} {
		if got := config.EnvName(k); got != want {
			t.Errorf("EnvName(%q) = %q, want %q", k, got, want)
		}
	}
}

func TestInvalidValuesNameTheKey(t *testing.T) {
	for name, tc := range map[string]struct {
		env   map[string]string
		wants []string
	}{
		"port out of range":   {map[string]string{"SERVE_PUBLIC_PORT": "70000"}, []string{"serve.public.port"}},
		"port not a number":   {map[string]string{"SERVE_PUBLIC_PORT": "abc"}, []string{"serve.public.port", "SERVE_PUBLIC_PORT", "integer"}},
		"negative admin port": {map[string]string{"SERVE_ADMIN_PORT": "-1"}, []string{"serve.admin.port"}},
		"bad boolean":         {map[string]string{"RATELIMIT_ENABLED": "maybe"}, []string{"ratelimit.enabled", "RATELIMIT_ENABLED"}},
		"bad duration":        {map[string]string{"TTL_ACCESS_TOKEN": "an hour"}, []string{"ttl.access_token"}},
		"zero rule limit":     {map[string]string{"RATELIMIT_RULES_LOGIN_LIMIT": "0"}, []string{"ratelimit.rules.login.limit"}},
		"bad enum":            {map[string]string{"TOKENS_ALGORITHM": "HS256"}, []string{"tokens.algorithm"}},
		"short secret":        {map[string]string{"SECRETS_DEFAULT": secretA + ",short"}, []string{"secrets.default"}},
		"cipher too long":     {map[string]string{"SECRETS_CIPHER": cipherK + "x"}, []string{"secrets.cipher"}},
		"bad base url":        {map[string]string{"SERVE_PUBLIC_BASE_URL": "not a url"}, []string{"serve.public.base_url"}},
		"bad log level":       {map[string]string{"LOG_LEVEL": "loud"}, []string{"log.level"}},
	} {
		t.Run(name, func(t *testing.T) {
			mustFail(t, config.Options{Env: env(withSecrets(tc.env))}, tc.wants...)
		})
	}
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigFile(t *testing.T) {
	p := writeFile(t, "pvauth.yaml", `
serve:
  public:
    port: 7000
    trusted_proxies: [10.0.0.0/8]
ttl:
  access_token: 90m
ratelimit:
  rules:
    login: {limit: 3, window: 30s}
secrets:
  default: [`+secretA+`]
  cipher: [`+cipherK+`]
  file_signature: `+fileSig+`
dsn: sqlite://data/pvauth.sqlite?_fk=true
`)
	c := load(t, config.Options{File: p, Env: env(map[string]string{"SERVE_PUBLIC_PORT": "7100"})})
	if c.Serve.Public.Port != 7100 {
		t.Fatalf("the environment must win over the file: port %d", c.Serve.Public.Port)
	}
	if c.TTL.AccessToken != 90*time.Minute || c.TTL.RefreshToken != 72*time.Hour {
		t.Fatalf("ttl %+v", c.TTL)
	}
	if r := c.RateLimit.Rules["login"]; r.Limit != 3 || r.Window != 30*time.Second {
		t.Fatalf("login rule %+v", r)
	}
	if len(c.Serve.Public.TrustedProxies) != 1 || c.Serve.Admin.Port != 8081 {
		t.Fatalf("file merged over defaults wrongly: %+v", c.Serve)
	}
	// Relative SQLite paths are resolved beside the config file.
	if want := filepath.Join(filepath.Dir(p), "data", "pvauth.sqlite"); c.SQLitePath() != want {
		t.Fatalf("SQLitePath %q, want %q", c.SQLitePath(), want)
	}

	// Options.Set beats the environment.
	c = load(t, config.Options{File: p, Env: env(map[string]string{"SERVE_PUBLIC_PORT": "7100"}), Set: map[string]any{"serve.public.port": 7200}})
	if c.Serve.Public.Port != 7200 {
		t.Fatalf("Set ignored: %d", c.Serve.Public.Port)
	}

	jsonFile := writeFile(t, "pvauth.json", `{"serve":{"admin":{"port":7001}},"secrets":{"default":["`+secretA+`"],"cipher":["`+cipherK+`"],"file_signature":"`+fileSig+`"}}`)
	if c := load(t, config.Options{File: jsonFile, Env: env(nil)}); c.Serve.Admin.Port != 7001 {
		t.Fatalf("json file: %d", c.Serve.Admin.Port)
	}
}

func TestConfigFileErrors(t *testing.T) {
	unknown := writeFile(t, "unknown.yaml", "serve:\n  public:\n    prot: 8080\n")
	mustFail(t, config.Options{File: unknown, Env: env(withSecrets(nil))}, "prot")

	unknownTop := writeFile(t, "top.yaml", "databse: x\n")
	mustFail(t, config.Options{File: unknownTop, Env: env(withSecrets(nil))}, "databse")

	unknownRule := writeFile(t, "rule.yaml", "ratelimit:\n  rules:\n    logn: {limit: 1, window: 1s}\n")
	mustFail(t, config.Options{File: unknownRule, Env: env(withSecrets(nil))}, "logn")

	wrongType := writeFile(t, "type.yaml", "serve:\n  public:\n    port: eighty\n")
	mustFail(t, config.Options{File: wrongType, Env: env(withSecrets(nil))}, "serve.public.port")

	broken := writeFile(t, "broken.yaml", "serve: [\n")
	mustFail(t, config.Options{File: broken, Env: env(withSecrets(nil))}, "broken.yaml")

	mustFail(t, config.Options{File: filepath.Join(t.TempDir(), "absent.yaml"), Env: env(withSecrets(nil))}, "absent.yaml")
}

func TestMissingSecrets(t *testing.T) {
	err := mustFail(t, config.Options{Env: env(nil)}, "secrets.default", "SECRETS_DEFAULT", "secrets.cipher", "secrets.file_signature", "--dev")
	// One secret missing: only it is named.
	err = mustFail(t, config.Options{Env: env(map[string]string{
		"SECRETS_CIPHER": cipherK, "SECRETS_FILE_SIGNATURE": fileSig,
	})}, "secrets.default")
	if strings.Contains(err.Error(), "secrets.cipher") {
		t.Fatalf("names a secret that is set: %v", err)
	}
}

func TestDevSecretsInMemory(t *testing.T) {
	c := load(t, config.Options{Dev: true, Env: env(map[string]string{"DSN": "memory"})})
	if !c.Dev || len(c.Secrets.Default) != 1 || len(c.Secrets.Default[0]) < 32 ||
		len(c.Secrets.Cipher) != 1 || len(c.Secrets.Cipher[0]) != 32 || len(c.Secrets.FileSignature) < 32 {
		t.Fatalf("dev secrets: %+v", c.Secrets)
	}
	if c.SQLitePath() != "" {
		t.Fatalf("memory has no file: %q", c.SQLitePath())
	}
	c2 := load(t, config.Options{Dev: true, Env: env(map[string]string{"DSN": "memory"})})
	if c2.Secrets.Default[0] == c.Secrets.Default[0] || c2.Secrets.Cipher[0] == c.Secrets.Cipher[0] {
		t.Fatal("throw-away secrets are not random")
	}
	// Secrets that are set are kept in --dev.
	c3 := load(t, config.Options{Dev: true, Env: env(map[string]string{"DSN": "memory", "SECRETS_CIPHER": cipherK})})
	if c3.Secrets.Cipher[0] != cipherK {
		t.Fatalf("--dev replaced a configured secret: %q", c3.Secrets.Cipher)
	}
}

func TestDevSecretsPersistedBesideSQLite(t *testing.T) {
	dir := t.TempDir()
	dsn := "sqlite://" + filepath.Join(dir, "pvauth.sqlite") + "?_fk=true"
	o := config.Options{Dev: true, Env: env(map[string]string{"DSN": dsn})}
	c1 := load(t, o)
	path := filepath.Join(dir, "pvauth.sqlite.dev-secrets.json")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("secrets not persisted: %v", err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("secrets file mode %v", fi.Mode().Perm())
	}
	var stored config.Secrets
	if err := json.Unmarshal(raw, &stored); err != nil || len(stored.Cipher) != 1 || stored.Cipher[0] != c1.Secrets.Cipher[0] {
		t.Fatalf("stored %s (%v)", raw, err)
	}

	c2 := load(t, o)
	if c2.Secrets.Default[0] != c1.Secrets.Default[0] || c2.Secrets.Cipher[0] != c1.Secrets.Cipher[0] ||
		c2.Secrets.FileSignature != c1.Secrets.FileSignature {
		t.Fatalf("the next Load did not reuse the stored secrets:\n%+v\n%+v", c1.Secrets, c2.Secrets)
	}

	// Without --dev the stored file is not a source of secrets.
	mustFail(t, config.Options{Env: env(map[string]string{"DSN": dsn})}, "secrets.default")
}

func TestSQLitePath(t *testing.T) {
	for dsn, want := range map[string]string{
		"sqlite:///var/lib/pvauth.db?_fk=true": "/var/lib/pvauth.db",
		"sqlite3:///x/y.db":                    "/x/y.db",
		"sqlite://rel.db":                      "/base/rel.db",
		"sqlite://file::memory:?cache=shared":  "",
		"memory":                               "",
		"postgres://u@h/db":                    "",
	} {
		c := &config.Config{DSN: dsn, Dir: "/base"}
		if got := c.SQLitePath(); got != want {
			t.Errorf("SQLitePath(%q) = %q, want %q", dsn, got, want)
		}
	}
}

// Admin API keys and the file-signature key have no minimum length in the contract: short
// ones are accepted (with a warning), so a deployment is never refused for them.
func TestShortKeysAreAccepted(t *testing.T) {
	c, err := config.Load(config.Options{Env: env(withSecrets(map[string]string{"SERVE_ADMIN_API_KEYS": "tiny,other", "SECRETS_FILE_SIGNATURE": "short"}))})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Serve.Admin.APIKeys) != 2 || c.Secrets.FileSignature != "short" {
		t.Fatalf("got %v %q", c.Serve.Admin.APIKeys, c.Secrets.FileSignature)
	}
}

// The keys of the trust chain (API.md §8): defaults, and environment overrides.
func TestTrustChainKeys(t *testing.T) {
	c := load(t, config.Options{Env: env(withSecrets(nil))})
	if c.Security.StepUp.MaxAge != 10*time.Minute || c.Confirmations.NumberMatching || c.TTL.ConfirmationReceipt != 5*time.Minute {
		t.Fatalf("defaults: step_up.max_age %s, number_matching %v, confirmation_receipt %s",
			c.Security.StepUp.MaxAge, c.Confirmations.NumberMatching, c.TTL.ConfirmationReceipt)
	}
	c = load(t, config.Options{Env: env(withSecrets(map[string]string{
		"SECURITY_STEP_UP_MAX_AGE":     "2m",
		"CONFIRMATION_NUMBER_MATCHING": "true",
		"TTL_CONFIRMATION_RECEIPT":     "90s",
	}))})
	if c.Security.StepUp.MaxAge != 2*time.Minute || !c.Confirmations.NumberMatching || c.TTL.ConfirmationReceipt != 90*time.Second {
		t.Fatalf("overrides: step_up.max_age %s, number_matching %v, confirmation_receipt %s",
			c.Security.StepUp.MaxAge, c.Confirmations.NumberMatching, c.TTL.ConfirmationReceipt)
	}
	_, err := config.Load(config.Options{Env: env(withSecrets(map[string]string{"SECURITY_STEP_UP_MAX_AGE": "soon"}))})
	if err == nil || !strings.Contains(err.Error(), "security.step_up.max_age") {
		t.Fatalf("a bad duration: %v", err)
	}
}

func TestRateLimitStoreKeys(t *testing.T) {
	c := load(t, config.Options{Env: env(withSecrets(nil))})
	if c.RateLimit.Store != config.RateLimitStoreMemory || c.RateLimit.Redis.URL != "" {
		t.Fatalf("defaults: ratelimit.store %q, ratelimit.redis.url %q", c.RateLimit.Store, c.RateLimit.Redis.URL)
	}
	c = load(t, config.Options{Env: env(withSecrets(map[string]string{
		"RATELIMIT_STORE":     "redis",
		"RATELIMIT_REDIS_URL": "redis://:pw@redis:6379/0",
	}))})
	if c.RateLimit.Store != config.RateLimitStoreRedis || c.RateLimit.Redis.URL != "redis://:pw@redis:6379/0" {
		t.Fatalf("overrides: ratelimit.store %q, ratelimit.redis.url %q", c.RateLimit.Store, c.RateLimit.Redis.URL)
	}
	mustFail(t, config.Options{Env: env(withSecrets(map[string]string{"RATELIMIT_STORE": "memcached"}))}, "ratelimit.store")
	mustFail(t, config.Options{Env: env(withSecrets(map[string]string{"RATELIMIT_STORE": "redis"}))}, "ratelimit.redis.url")
}
