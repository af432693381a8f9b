// Package config loads pvauth's configuration: the embedded defaults (config.yaml), an
// optional file, then environment overrides, validated as a whole against
// .schema/config.schema.json before anything starts.
package config

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"

	pvauth "github.com/pvpipe/pvauth"
	"github.com/pvpipe/pvauth/schema"
	"github.com/pvpipe/pvauth/x"
)

// Config is the typed, validated configuration.
type Config struct {
	DSN       string    `mapstructure:"dsn"`
	Serve     Serve     `mapstructure:"serve"`
	Secrets   Secrets   `mapstructure:"secrets"`
	URLs      URLs      `mapstructure:"urls"`
	TTL       TTL       `mapstructure:"ttl"`
	Tokens    Tokens    `mapstructure:"tokens"`
	Hashers   Hashers   `mapstructure:"hashers"`
	RateLimit RateLimit `mapstructure:"ratelimit"`
	Biometric Biometric `mapstructure:"biometric"`
	Security  Security  `mapstructure:"security"`
	Janitor   Janitor   `mapstructure:"janitor"`
	// Confirmations holds the confirmation.* keys.
	Confirmations Confirmations `mapstructure:"confirmation"`
	Push          Push          `mapstructure:"push"`
	WebAuthn      WebAuthn      `mapstructure:"webauthn"`
	Log           Log           `mapstructure:"log"`

	// Dev is set by `serve --dev`.
	Dev bool `mapstructure:"-"`
	// Dir is the directory relative sqlite paths are resolved against.
	Dir string `mapstructure:"-"`
}

type Serve struct {
	Public Public `mapstructure:"public"`
	Admin  Admin  `mapstructure:"admin"`
}

type Public struct {
	Host           string   `mapstructure:"host"`
	Port           int      `mapstructure:"port"`
	BaseURL        string   `mapstructure:"base_url"`
	TrustedProxies []string `mapstructure:"trusted_proxies"`
	CORS           CORS     `mapstructure:"cors"`
}

type CORS struct {
	Enabled        bool     `mapstructure:"enabled"`
	AllowedOrigins []string `mapstructure:"allowed_origins"`
}

type Admin struct {
	Host    string   `mapstructure:"host"`
	Port    int      `mapstructure:"port"`
	APIKeys []string `mapstructure:"api_keys"`
	// AllowedHosts are Host header values the admin port answers besides loopback
	// addresses and localhost when it has no API keys (against DNS rebinding).
	AllowedHosts []string `mapstructure:"allowed_hosts"`
}

type Secrets struct {
	Default       []string `mapstructure:"default" json:"default"`
	Cipher        []string `mapstructure:"cipher" json:"cipher"`
	FileSignature string   `mapstructure:"file_signature" json:"file_signature"`
}

type URLs struct {
	Issuer    string `mapstructure:"issuer"`
	LoginUI   string `mapstructure:"login_ui"`
	ConsentUI string `mapstructure:"consent_ui"`
}

type TTL struct {
	AccessToken            time.Duration `mapstructure:"access_token"`
	RefreshToken           time.Duration `mapstructure:"refresh_token"`
	RefreshTokenRememberMe time.Duration `mapstructure:"refresh_token_remember_me"`
	PendingLogin           time.Duration `mapstructure:"pending_login"`
	Challenge              time.Duration `mapstructure:"challenge"`
	Confirmation           time.Duration `mapstructure:"confirmation"`
	WebAuthnSession        time.Duration `mapstructure:"webauthn_session"`
	ConfirmationReceipt    time.Duration `mapstructure:"confirmation_receipt"`
	// OAuth2Flow is how long an OAuth2 login and consent hand-off may take.
	OAuth2Flow time.Duration `mapstructure:"oauth2_flow"`
	// LoginSession is how long a remembered browser login (OpenID Connect SSO) lasts.
	LoginSession time.Duration `mapstructure:"login_session"`
}

type Tokens struct {
	Algorithm string   `mapstructure:"algorithm"`
	Audience  []string `mapstructure:"audience"`
}

type Hashers struct {
	Argon2 Argon2 `mapstructure:"argon2"`
}

type Argon2 struct {
	MemoryKiB     uint32 `mapstructure:"memory_kib"`
	Iterations    uint32 `mapstructure:"iterations"`
	Parallelism   uint8  `mapstructure:"parallelism"`
	SaltLength    uint32 `mapstructure:"salt_length"`
	KeyLength     uint32 `mapstructure:"key_length"`
	MaxConcurrent int    `mapstructure:"max_concurrent"`
	// MaxWait bounds the wait for a hashing slot; a login that waits longer is 503.
	MaxWait time.Duration `mapstructure:"max_wait"`
}

type RateLimit struct {
	Enabled bool            `mapstructure:"enabled"`
	Rules   map[string]Rule `mapstructure:"rules"`
	// Store is where counters live: "memory" (one replica) or "redis" (shared).
	Store string         `mapstructure:"store"`
	Redis RateLimitRedis `mapstructure:"redis"`
}

// Rate limit stores (ratelimit.store).
const (
	RateLimitStoreMemory = "memory"
	RateLimitStoreRedis  = "redis"
)

type RateLimitRedis struct {
	// URL is redis://[user:password@]host:6379/0 (or rediss://); it may hold a password.
	URL string `mapstructure:"url"`
}

type Rule struct {
	Limit  int           `mapstructure:"limit"`
	Window time.Duration `mapstructure:"window"`
}

type Biometric struct {
	KeygenEnabled bool `mapstructure:"keygen_enabled"`
}

// Janitor is the periodic deletion of expired rows.
type Janitor struct {
	Interval time.Duration `mapstructure:"interval"`
}

type Security struct {
	StepUp StepUp `mapstructure:"step_up"`
}

// StepUp bounds how old a session's login may be for enrolling an authenticator.
type StepUp struct {
	MaxAge time.Duration `mapstructure:"max_age"`
}

type Confirmations struct {
	// NumberMatching makes initiate return a two-digit matchCode that verify must repeat.
	NumberMatching bool `mapstructure:"number_matching"`
}

type Push struct {
	FCM FCM `mapstructure:"fcm"`
}

type FCM struct {
	Enabled         bool   `mapstructure:"enabled"`
	ProjectID       string `mapstructure:"project_id"`
	CredentialsFile string `mapstructure:"credentials_file"`
	Endpoint        string `mapstructure:"endpoint"`
}

type WebAuthn struct {
	RP RP `mapstructure:"rp"`
}

type RP struct {
	ID          string   `mapstructure:"id"`
	DisplayName string   `mapstructure:"display_name"`
	Origins     []string `mapstructure:"origins"`
}

type Log struct {
	Level  string `mapstructure:"level"`
	Format string `mapstructure:"format"`
}

// Issuer is urls.issuer, or the public base URL when unset.
func (c *Config) Issuer() string {
	if c.URLs.Issuer != "" {
		return strings.TrimRight(c.URLs.Issuer, "/")
	}
	return strings.TrimRight(c.Serve.Public.BaseURL, "/")
}

// CheckAdminExposure refuses an admin port reachable off this machine without API keys:
// anyone on the network could then create super-admins. --dev is exempt.
func (c *Config) CheckAdminExposure() error {
	if c.Dev || len(c.Serve.Admin.APIKeys) > 0 || x.IsLoopbackHost(c.Serve.Admin.Host) {
		return nil
	}
	return fmt.Errorf("serve.admin.host is %q, which is not a loopback address, and serve.admin.api_keys is empty: "+
		"set serve.admin.api_keys (SERVE_ADMIN_API_KEYS) or bind the admin port to 127.0.0.1", c.Serve.Admin.Host)
}

// PublicAddr is host:port of the public listener.
func (c *Config) PublicAddr() string {
	return joinHostPort(c.Serve.Public.Host, c.Serve.Public.Port)
}

// AdminAddr is host:port of the admin listener.
func (c *Config) AdminAddr() string {
	return joinHostPort(c.Serve.Admin.Host, c.Serve.Admin.Port)
}

func joinHostPort(h string, p int) string {
	if strings.Contains(h, ":") && !strings.HasPrefix(h, "[") {
		h = "[" + h + "]"
	}
	return h + ":" + strconv.Itoa(p)
}

// Options are the inputs of Load besides the environment.
type Options struct {
	File string
	Dev  bool
	// Env replaces os.LookupEnv (tests).
	Env func(string) (string, bool)
	// Set applies overrides after the environment (tests), by dotted key.
	Set map[string]any
	// NoSecrets skips the secrets check (commands that only need the DSN).
	NoSecrets bool
}

// Load builds the configuration: defaults, file, environment, overrides; validates it and
// applies the --dev rules for secrets.
func Load(o Options) (*Config, error) {
	v := viper.New()
	v.SetConfigType("yaml")
	if err := v.ReadConfig(bytes.NewReader(pvauth.DefaultConfig)); err != nil {
		return nil, fmt.Errorf("embedded defaults: %w", err)
	}
	dir, _ := os.Getwd()
	if o.File != "" {
		raw, err := os.ReadFile(o.File)
		if err != nil {
			return nil, fmt.Errorf("reading config file: %w", err)
		}
		v.SetConfigType(strings.TrimPrefix(filepath.Ext(o.File), "."))
		if ext := filepath.Ext(o.File); ext == "" || ext == ".yml" {
			v.SetConfigType("yaml")
		}
		if err := v.MergeConfig(bytes.NewReader(raw)); err != nil {
			return nil, fmt.Errorf("parsing config file %s: %w", o.File, err)
		}
		if abs, err := filepath.Abs(o.File); err == nil {
			dir = filepath.Dir(abs)
		}
	}

	leaves, err := schemaLeaves()
	if err != nil {
		return nil, err
	}
	lookup := o.Env
	if lookup == nil {
		lookup = os.LookupEnv
	}
	for _, l := range leaves {
		raw, ok := lookup(EnvName(l.key))
		if !ok {
			continue
		}
		val, err := castEnv(raw, l.typ)
		if err != nil {
			return nil, fmt.Errorf("invalid configuration: %s (from %s): %v", l.key, EnvName(l.key), err)
		}
		v.Set(l.key, val)
	}
	for k, val := range o.Set {
		v.Set(k, val)
	}

	val, err := schema.Config()
	if err != nil {
		return nil, err
	}
	if err := val.Validate(schema.Normalize(v.AllSettings())); err != nil {
		return nil, fmt.Errorf("invalid configuration: %w", err)
	}

	c := &Config{Dev: o.Dev, Dir: dir}
	if err := v.Unmarshal(c, func(dc *mapstructure.DecoderConfig) {
		dc.DecodeHook = mapstructure.ComposeDecodeHookFunc(
			mapstructure.StringToTimeDurationHookFunc(),
			mapstructure.StringToSliceHookFunc(","),
		)
	}); err != nil {
		return nil, fmt.Errorf("invalid configuration: %w", err)
	}
	if c.RateLimit.Store == RateLimitStoreRedis && strings.TrimSpace(c.RateLimit.Redis.URL) == "" {
		return nil, errors.New("invalid configuration: ratelimit.store is redis but ratelimit.redis.url (RATELIMIT_REDIS_URL) is empty")
	}
	if o.NoSecrets {
		return c, nil
	}
	c.warnWeak()
	if err := c.resolveSecrets(); err != nil {
		return nil, err
	}
	return c, nil
}

// EnvName is the environment variable that overrides a dotted key.
func EnvName(key string) string {
	return strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

func castEnv(raw, typ string) (any, error) {
	switch typ {
	case "integer":
		n, err := strconv.ParseInt(strings.TrimSpace(raw), 10, 64)
		if err != nil {
			return nil, errors.New("must be an integer")
		}
		return n, nil
	case "number":
		f, err := strconv.ParseFloat(strings.TrimSpace(raw), 64)
		if err != nil {
			return nil, errors.New("must be a number")
		}
		return f, nil
	case "boolean":
		b, err := strconv.ParseBool(strings.TrimSpace(raw))
		if err != nil {
			return nil, errors.New("must be true or false")
		}
		return b, nil
	case "array":
		out := []any{}
		for _, p := range strings.Split(raw, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
		return out, nil
	default:
		return raw, nil
	}
}

type leaf struct{ key, typ string }

// schemaLeaves lists every settable key of the config schema with its JSON type, so the
// environment can override keys that the files never mention.
func schemaLeaves() ([]leaf, error) {
	var doc map[string]any
	if err := json.Unmarshal(pvauth.ConfigSchema, &doc); err != nil {
		return nil, err
	}
	defs, _ := doc["$defs"].(map[string]any)
	var out []leaf
	var walk func(prefix string, node map[string]any)
	walk = func(prefix string, node map[string]any) {
		if ref, ok := node["$ref"].(string); ok {
			if d, ok := defs[strings.TrimPrefix(ref, "#/$defs/")].(map[string]any); ok {
				walk(prefix, d)
			}
			return
		}
		if props, ok := node["properties"].(map[string]any); ok {
			for k, p := range props {
				key := k
				if prefix != "" {
					key = prefix + "." + k
				}
				if pm, ok := p.(map[string]any); ok {
					walk(key, pm)
				}
			}
			return
		}
		typ, _ := node["type"].(string)
		if typ == "" {
			typ = "string"
		}
		out = append(out, leaf{key: prefix, typ: typ})
	}
	walk("", doc)
	return out, nil
}

// warnWeak warns about secrets that are allowed but short.
func (c *Config) warnWeak() {
	for _, k := range c.Serve.Admin.APIKeys {
		if len(k) < 16 {
			slog.Warn("serve.admin.api_keys has a key shorter than 16 characters; use long random keys in production")
			break
		}
	}
	if n := len(c.Secrets.FileSignature); n > 0 && n < 32 {
		slog.Warn("secrets.file_signature is shorter than 32 characters; use a long random key in production")
	}
}

// resolveSecrets fills missing secrets in --dev (persisting them beside a SQLite file so a
// restart can still decrypt what it stored) and refuses to start without them otherwise.
func (c *Config) resolveSecrets() error {
	missing := c.missingSecrets()
	if len(missing) == 0 {
		return nil
	}
	if !c.Dev {
		names := make([]string, len(missing))
		for i, k := range missing {
			names[i] = fmt.Sprintf("%s (env %s)", k, EnvName(k))
		}
		return fmt.Errorf("missing required secrets: %s; set them in the config file or the environment, or run with --dev for throw-away secrets", strings.Join(names, ", "))
	}
	var stored Secrets
	path := c.devSecretsPath()
	if path != "" {
		if raw, err := os.ReadFile(path); err == nil {
			_ = json.Unmarshal(raw, &stored)
		}
	}
	if len(c.Secrets.Default) == 0 {
		if len(stored.Default) > 0 {
			c.Secrets.Default = stored.Default
		} else {
			c.Secrets.Default = []string{randomSecret(48)}
		}
	}
	if len(c.Secrets.Cipher) == 0 {
		if len(stored.Cipher) > 0 {
			c.Secrets.Cipher = stored.Cipher
		} else {
			c.Secrets.Cipher = []string{randomSecret(32)}
		}
	}
	if c.Secrets.FileSignature == "" {
		if stored.FileSignature != "" {
			c.Secrets.FileSignature = stored.FileSignature
		} else {
			c.Secrets.FileSignature = randomSecret(48)
		}
	}
	if path != "" {
		if raw, err := json.Marshal(c.Secrets); err == nil {
			_ = os.WriteFile(path, raw, 0o600)
		}
	}
	slog.Warn("!!! DEVELOPMENT MODE: using throw-away secrets; never run --dev in production !!!",
		"missing", strings.Join(missing, ","), "stored_in", path)
	return nil
}

func (c *Config) missingSecrets() []string {
	var m []string
	if len(c.Secrets.Default) == 0 {
		m = append(m, "secrets.default")
	}
	if len(c.Secrets.Cipher) == 0 {
		m = append(m, "secrets.cipher")
	}
	if c.Secrets.FileSignature == "" {
		m = append(m, "secrets.file_signature")
	}
	return m
}

func (c *Config) devSecretsPath() string {
	p := c.SQLitePath()
	if p == "" {
		return ""
	}
	return p + ".dev-secrets.json"
}

// SQLitePath is the file of a sqlite:// DSN resolved against Dir, or "" for other DSNs.
func (c *Config) SQLitePath() string {
	if !strings.HasPrefix(c.DSN, "sqlite://") && !strings.HasPrefix(c.DSN, "sqlite3://") {
		return ""
	}
	p := strings.TrimPrefix(strings.TrimPrefix(c.DSN, "sqlite://"), "sqlite3://")
	if i := strings.IndexByte(p, '?'); i >= 0 {
		p = p[:i]
	}
	if p == "" || strings.Contains(p, ":memory:") || strings.HasPrefix(p, "file:") {
		return ""
	}
	if !filepath.IsAbs(p) {
		p = filepath.Join(c.Dir, p)
	}
	return p
}

func randomSecret(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)[:n]
}
