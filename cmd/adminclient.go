package cmd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// Admin API client settings shared by the commands that talk to a running server
// (identities, clients).
const (
	defaultAdminEndpoint = "http://127.0.0.1:8081"
	envAdminEndpoint     = "PVAUTH_ADMIN_ENDPOINT"
	envAdminAPIKey       = "PVAUTH_ADMIN_API_KEY"
	adminClientTimeout   = 30 * time.Second
	// maxAdminResponse bounds what the CLI reads from the server.
	maxAdminResponse = 16 << 20
)

// adminFlags are the --endpoint and --api-key flags of an admin API command group.
type adminFlags struct {
	endpoint string
	apiKey   string
}

// register adds the flags as persistent flags of c, so every subcommand has them.
// The environment is read when a command runs (not as the flag default) so that
// --help never prints a key.
func (f *adminFlags) register(c *cobra.Command) {
	c.PersistentFlags().StringVar(&f.endpoint, "endpoint", defaultAdminEndpoint,
		"base URL of the admin API (env "+envAdminEndpoint+")")
	c.PersistentFlags().StringVar(&f.apiKey, "api-key", "",
		"admin API key, sent as Authorization: Bearer (env "+envAdminAPIKey+")")
}

// client builds the admin client for cmd: a flag given on the command line wins over
// the environment, which wins over the default.
func (f *adminFlags) client(cmd *cobra.Command) (*adminClient, error) {
	endpoint := f.endpoint
	if fl := cmd.Flags().Lookup("endpoint"); fl == nil || !fl.Changed {
		if v, ok := os.LookupEnv(envAdminEndpoint); ok && strings.TrimSpace(v) != "" {
			endpoint = v
		}
	}
	key := f.apiKey
	if fl := cmd.Flags().Lookup("api-key"); fl == nil || !fl.Changed {
		if v, ok := os.LookupEnv(envAdminAPIKey); ok {
			key = v
		}
	}
	return newAdminClient(endpoint, strings.TrimSpace(key))
}

// adminClient calls the admin API and unwraps its {"data": …} envelope.
type adminClient struct {
	base   *url.URL
	apiKey string
	http   *http.Client
}

func newAdminClient(endpoint, apiKey string) (*adminClient, error) {
	endpoint = strings.TrimSpace(endpoint)
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("invalid --endpoint %q: want an http(s) URL such as %s", endpoint, defaultAdminEndpoint)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawQuery, u.Fragment = "", ""
	return &adminClient{base: u, apiKey: apiKey, http: &http.Client{Timeout: adminClientTimeout}}, nil
}

// apiError is an error answer of the admin API: the contract's error body.
type apiError struct {
	Status  int
	Code    string
	Message string
}

func (e *apiError) Error() string {
	code := e.Code
	if code == "" {
		code = strings.ToLower(strings.ReplaceAll(http.StatusText(e.Status), " ", "_"))
	}
	return fmt.Sprintf("%s (HTTP %d %s)", e.Message, e.Status, code)
}

// do sends method path?query with body (JSON-encoded unless nil) and decodes the data
// of a 2xx answer into out (unless nil). Non-2xx answers become *apiError.
func (c *adminClient) do(ctx context.Context, method, path string, query url.Values, body, out any) error {
	u := *c.base
	u.Path += path
	if len(query) > 0 {
		u.RawQuery = query.Encode()
	}
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "pvauth-cli/"+Version)
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+c.apiKey)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("cannot reach the admin API at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAdminResponse))
	if err != nil {
		return fmt.Errorf("reading the answer of %s %s: %w", method, u.Path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return decodeAPIError(resp.StatusCode, raw)
	}
	if out == nil {
		return nil
	}
	var env struct {
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(raw, &env); err != nil || len(env.Data) == 0 {
		return fmt.Errorf("unexpected answer of %s %s (HTTP %d): %s", method, u.Path, resp.StatusCode, snippet(raw))
	}
	if err := json.Unmarshal(env.Data, out); err != nil {
		return fmt.Errorf("decoding the answer of %s %s: %w", method, u.Path, err)
	}
	return nil
}

// decodeAPIError reads the contract's error body; anything else (a proxy's HTML page)
// is reported with the status and the start of the body.
func decodeAPIError(status int, raw []byte) error {
	var b struct {
		Message    string `json:"message"`
		StatusCode int    `json:"statusCode"`
		Error      string `json:"error"`
	}
	if err := json.Unmarshal(raw, &b); err == nil && b.Message != "" {
		return &apiError{Status: status, Code: b.Error, Message: b.Message}
	}
	msg := http.StatusText(status)
	if s := snippet(raw); s != "" {
		msg += ": " + s
	}
	return &apiError{Status: status, Message: msg}
}

func snippet(raw []byte) string {
	s := strings.TrimSpace(string(raw))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// printRawJSON writes a JSON document indented, with a final newline.
func printRawJSON(w io.Writer, raw json.RawMessage) error {
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		return err
	}
	buf.WriteByte('\n')
	_, err := w.Write(buf.Bytes())
	return err
}
