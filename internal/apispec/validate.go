// Package apispec checks live HTTP traffic against pvauth's OpenAPI document
// (.schema/openapi.yaml, embedded as pvauth.OpenAPI).
//
// Flow tests route their requests through a validating client:
//
//	srv := testserver.Start(t, "memory", nil)
//	srv.Client = apispec.NewValidatingClient(t, apispec.MustLoad(t), srv.PublicURL, srv.AdminURL)
//	// … srv.Public(…), srv.Admin(…) as usual …
//
// Every response that comes back is matched to its documented operation and checked:
// the status must be documented, the body must match the schema (JSON bodies; other
// media types only need a documented content type), no field may be sent that the
// schema does not list (unless it allows additionalProperties), the path must be
// served on the port its path item names (x-pvauth-port), and the headers every
// response carries (X-Request-Id, security headers) must be there. Mismatches are
// collected and fail the test when it ends.
package apispec

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	pvauth "github.com/pvpipe/pvauth"
)

// Port values of the x-pvauth-port extension of a path item.
const (
	PortExtension = "x-pvauth-port"
	PortPublic    = "public"
	PortAdmin     = "admin"
	PortBoth      = "both"
)

// Load parses and validates the embedded OpenAPI document.
func Load() (*openapi3.T, error) {
	doc, err := openapi3.NewLoader().LoadFromData(pvauth.OpenAPI)
	if err != nil {
		return nil, fmt.Errorf("loading .schema/openapi.yaml: %w", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("validating .schema/openapi.yaml: %w", err)
	}
	return doc, nil
}

// MustLoad is Load for tests.
func MustLoad(t testing.TB) *openapi3.T {
	t.Helper()
	doc, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

// PortOf returns the x-pvauth-port of a path item ("" when missing).
func PortOf(item *openapi3.PathItem) string {
	s, _ := item.Extensions[PortExtension].(string)
	return s
}

// ServedOn reports whether a path item with x-pvauth-port itemPort is served on port.
func ServedOn(itemPort, port string) bool {
	return itemPort == port || itemPort == PortBoth
}

// headersOnEveryResponse are the headers API.md §1 puts on every response.
var headersOnEveryResponse = [][2]string{
	{"Strict-Transport-Security", "max-age=31536000; includeSubDomains"},
	{"X-Content-Type-Options", "nosniff"},
	{"X-Frame-Options", "DENY"},
	{"X-Xss-Protection", "1; mode=block"},
	{"Content-Security-Policy", "default-src 'self'"},
}

type base struct {
	url  *url.URL
	port string
}

// Validator checks exchanges against the document. It is safe for concurrent use.
type Validator struct {
	doc    *openapi3.T
	router routers.Router
	bases  []base
	opts   *openapi3filter.Options

	mu       sync.Mutex
	failures []string
	seen     map[string]map[int]bool
}

// NewValidator returns a validator for servers reachable at the two base URLs.
// Requests to other hosts pass through unchecked.
func NewValidator(doc *openapi3.T, publicBaseURL, adminBaseURL string) (*Validator, error) {
	v := &Validator{doc: doc, seen: map[string]map[int]bool{}}
	for _, b := range []struct{ raw, port string }{{publicBaseURL, PortPublic}, {adminBaseURL, PortAdmin}} {
		u, err := url.Parse(b.raw)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("apispec: bad %s base URL %q", b.port, b.raw)
		}
		u.Path = strings.TrimSuffix(u.Path, "/")
		v.bases = append(v.bases, base{url: u, port: b.port})
	}
	r, err := gorillamux.NewRouter(routingDoc(doc))
	if err != nil {
		return nil, fmt.Errorf("apispec: router: %w", err)
	}
	v.router = r
	v.opts = &openapi3filter.Options{
		IncludeResponseStatus: true,
		MultiError:            true,
		SchemaValidationOptions: []openapi3.SchemaValidationOption{
			openapi3.WithStringFormatValidator("uuid", openapi3.NewRegexpFormatValidator(openapi3.FormatOfStringForUUIDOfRFC9562)),
		},
	}
	return v, nil
}

// routingDoc is doc without servers, so that operations are matched by path alone (the
// port is checked separately, and test servers listen on random ports).
func routingDoc(doc *openapi3.T) *openapi3.T {
	cp := &openapi3.T{
		OpenAPI:    doc.OpenAPI,
		Info:       doc.Info,
		Components: doc.Components,
		Paths:      openapi3.NewPaths(),
	}
	for p, item := range doc.Paths.Map() {
		it := *item
		it.Servers = nil
		cp.Paths.Set(p, &it)
	}
	return cp
}

// Transport wraps next (http.DefaultTransport when nil) so that every exchange is checked.
func (v *Validator) Transport(next http.RoundTripper) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	return &transport{v: v, next: next}
}

type transport struct {
	v    *Validator
	next http.RoundTripper
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	t.v.Check(req, resp.StatusCode, resp.Header, body)
	return resp, nil
}

// NewValidatingClient returns a client whose exchanges with the two servers are
// checked against doc; the test fails at cleanup listing every mismatch.
func NewValidatingClient(t testing.TB, doc *openapi3.T, publicBaseURL, adminBaseURL string) *http.Client {
	t.Helper()
	v, err := NewValidator(doc, publicBaseURL, adminBaseURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, f := range v.Failures() {
			t.Errorf("OpenAPI mismatch: %s", f)
		}
	})
	return &http.Client{Timeout: 30 * time.Second, Transport: v.Transport(nil)}
}

// ValidatorOf returns the validator behind a client of NewValidatingClient, or nil.
func ValidatorOf(c *http.Client) *Validator {
	if t, ok := c.Transport.(*transport); ok {
		return t.v
	}
	return nil
}

// Failures returns the mismatches recorded so far.
func (v *Validator) Failures() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return slices.Clone(v.failures)
}

// Seen returns, per documented operation ("GET /admin/identities/{id}"), the statuses
// observed, sorted.
func (v *Validator) Seen() map[string][]int {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := make(map[string][]int, len(v.seen))
	for op, st := range v.seen {
		for s := range st {
			out[op] = append(out[op], s)
		}
		sort.Ints(out[op])
	}
	return out
}

// Check validates one exchange and records what is wrong with it. Requests to hosts
// other than the two base URLs are ignored. It returns the problems it recorded.
func (v *Validator) Check(req *http.Request, status int, header http.Header, body []byte) []string {
	b, ok := v.baseOf(req.URL)
	if !ok {
		return nil
	}
	path := strings.TrimPrefix(req.URL.Path, b.url.Path)
	what := fmt.Sprintf("%s %s (%s port) → %d", req.Method, path, b.port, status)
	var problems []string
	bad := func(format string, args ...any) {
		problems = append(problems, what+": "+fmt.Sprintf(format, args...))
	}

	if header.Get("X-Request-Id") == "" {
		bad("no X-Request-Id header")
	}
	for _, h := range headersOnEveryResponse {
		if got := header.Get(h[0]); got != h[1] {
			bad("header %s is %q, want %q", h[0], got, h[1])
		}
	}

	rreq := req.Clone(context.WithoutCancel(req.Context()))
	rreq.URL.Path, rreq.URL.RawPath = path, ""
	route, params, err := v.router.FindRoute(rreq)
	switch {
	case err != nil:
		// Not a documented operation: only the router's own 404/405 is acceptable.
		if status != http.StatusNotFound && status != http.StatusMethodNotAllowed {
			bad("the operation is not documented (%v)", err)
		} else {
			problems = append(problems, v.checkErrorBody(what, header, body)...)
		}
	case !ServedOn(PortOf(route.PathItem), b.port):
		if status != http.StatusNotFound {
			bad("the path is documented for the %s port only", PortOf(route.PathItem))
		} else {
			problems = append(problems, v.checkErrorBody(what, header, body)...)
		}
	default:
		v.mu.Lock()
		key := req.Method + " " + route.Path
		if v.seen[key] == nil {
			v.seen[key] = map[int]bool{}
		}
		v.seen[key][status] = true
		v.mu.Unlock()
		problems = append(problems, v.checkResponse(what, rreq, route, params, status, header, body)...)
	}
	if len(problems) > 0 {
		v.mu.Lock()
		v.failures = append(v.failures, problems...)
		v.mu.Unlock()
	}
	return problems
}

func (v *Validator) baseOf(u *url.URL) (base, bool) {
	for _, b := range v.bases {
		if strings.EqualFold(u.Scheme, b.url.Scheme) && strings.EqualFold(u.Host, b.url.Host) &&
			(b.url.Path == "" || u.Path == b.url.Path || strings.HasPrefix(u.Path, b.url.Path+"/")) {
			return b, true
		}
	}
	return base{}, false
}

func isJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json"))
}

func (v *Validator) checkResponse(what string, req *http.Request, route *routers.Route, params map[string]string,
	status int, header http.Header, body []byte) []string {
	opts := *v.opts
	ct := header.Get("Content-Type")
	var problems []string
	if !isJSON(ct) {
		// Non-JSON bodies (metrics text): the content type must be documented, the body is
		// not checked.
		opts.ExcludeResponseBody = true
		if ref := responseFor(route.Operation, status); ref != nil && ref.Value != nil && len(ref.Value.Content) > 0 &&
			ref.Value.Content.Get(ct) == nil {
			problems = append(problems, fmt.Sprintf("%s: content type %q is not documented", what, ct))
		}
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
		Status:                 status,
		Header:                 header,
		Options:                &opts,
	}
	in.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(req.Context(), in); err != nil {
		problems = append(problems, what+": "+describe(err))
	}
	if isJSON(ct) {
		if ref := responseFor(route.Operation, status); ref != nil && ref.Value != nil {
			if mt := ref.Value.Content.Get(ct); mt != nil && mt.Schema != nil {
				problems = append(problems, undocumentedFields(what, mt.Schema, body)...)
			}
		}
	}
	return problems
}

// checkErrorBody checks a 404/405 of the router against the Error schema.
func (v *Validator) checkErrorBody(what string, header http.Header, body []byte) []string {
	ref := v.doc.Components.Schemas["Error"]
	if ref == nil {
		return nil
	}
	if !isJSON(header.Get("Content-Type")) {
		return []string{what + ": the error body is not JSON"}
	}
	var val any
	if err := json.Unmarshal(body, &val); err != nil {
		return []string{what + ": the error body is not valid JSON"}
	}
	if err := ref.Value.VisitJSON(val, openapi3.VisitAsResponse(), openapi3.MultiErrors()); err != nil {
		return []string{what + ": error body doesn't match schema \"Error\": " + describe(err)}
	}
	return undocumentedFields(what, ref, body)
}

func responseFor(op *openapi3.Operation, status int) *openapi3.ResponseRef {
	if op == nil || op.Responses == nil {
		return nil
	}
	if r := op.Responses.Status(status); r != nil {
		return r
	}
	return op.Responses.Default()
}

// describe makes a one-line message of a validation error: the reason, then each schema
// error as "at <JSON pointer>: <reason>" (without the schema dump).
func describe(err error) string {
	var re *openapi3filter.ResponseError
	if errors.As(err, &re) {
		if re.Err == nil {
			return re.Reason
		}
		return re.Reason + ": " + describe(re.Err)
	}
	var me openapi3.MultiError
	if errors.As(err, &me) {
		parts := make([]string, 0, len(me))
		for _, e := range me {
			parts = append(parts, describe(e))
		}
		return strings.Join(parts, "; ")
	}
	var se *openapi3.SchemaError
	if errors.As(err, &se) {
		return fmt.Sprintf("at /%s: %s", strings.Join(se.JSONPointer(), "/"), se.Reason)
	}
	return strings.Join(strings.Fields(err.Error()), " ")
}

// undocumentedFields reports object members of body that schema does not list. A schema
// (with its allOf/oneOf/anyOf parts) that lists no properties, or allows
// additionalProperties, accepts any members.
func undocumentedFields(what string, schema *openapi3.SchemaRef, body []byte) []string {
	var val any
	if err := json.Unmarshal(body, &val); err != nil {
		return nil // ValidateResponse reports undecodable bodies
	}
	found := map[string]bool{}
	walkFields(schema, val, "", found)
	out := make([]string, 0, len(found))
	for f := range found {
		out = append(out, fmt.Sprintf("%s: field %s is not documented", what, f))
	}
	sort.Strings(out)
	return out
}

func walkFields(ref *openapi3.SchemaRef, val any, at string, found map[string]bool) {
	if ref == nil || ref.Value == nil {
		return
	}
	switch x := val.(type) {
	case map[string]any:
		props := map[string][]*openapi3.SchemaRef{}
		var extra []*openapi3.SchemaRef
		open, closed := false, false
		collectObject(ref.Value, props, &extra, &open, &closed, 0)
		if len(props) == 0 && len(extra) == 0 && !closed {
			open = true
		}
		for k, member := range x {
			name := k
			if at != "" {
				name = at + "." + k
			}
			if ps, ok := props[k]; ok {
				for _, p := range ps {
					walkFields(p, member, name, found)
				}
				continue
			}
			if len(extra) > 0 {
				for _, p := range extra {
					walkFields(p, member, name, found)
				}
				continue
			}
			if !open {
				found[name] = true
			}
		}
	case []any:
		var items []*openapi3.SchemaRef
		collectItems(ref.Value, &items, 0)
		for i, member := range x {
			for _, it := range items {
				walkFields(it, member, fmt.Sprintf("%s[%d]", at, i), found)
			}
		}
	}
}

func collectObject(s *openapi3.Schema, props map[string][]*openapi3.SchemaRef, extra *[]*openapi3.SchemaRef, open, closed *bool, depth int) {
	if s == nil || depth > 16 {
		return
	}
	for k, p := range s.Properties {
		props[k] = append(props[k], p)
	}
	if ap := s.AdditionalProperties; ap.Schema != nil {
		*extra = append(*extra, ap.Schema)
	} else if ap.Has != nil {
		if *ap.Has {
			*open = true
		} else {
			*closed = true
		}
	}
	for _, group := range []openapi3.SchemaRefs{s.AllOf, s.OneOf, s.AnyOf} {
		for _, r := range group {
			if r != nil {
				collectObject(r.Value, props, extra, open, closed, depth+1)
			}
		}
	}
}

func collectItems(s *openapi3.Schema, items *[]*openapi3.SchemaRef, depth int) {
	if s == nil || depth > 16 {
		return
	}
	if s.Items != nil {
		*items = append(*items, s.Items)
	}
	for _, group := range []openapi3.SchemaRefs{s.AllOf, s.OneOf, s.AnyOf} {
		for _, r := range group {
			if r != nil {
				collectItems(r.Value, items, depth+1)
			}
		}
	}
}
