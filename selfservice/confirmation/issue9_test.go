package confirmation_test

// Issue 9: the challenge that names the action, RFC 8785 action hashes, number matching,
// signed receipts and one-time consumption — over real HTTP on SQLite and PostgreSQL.

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pvpipe/pvauth/internal/testkeys"

	"github.com/go-jose/go-jose/v3"

	"github.com/pvpipe/pvauth/internal/testdb"
	"github.com/pvpipe/pvauth/internal/testkit"
	"github.com/pvpipe/pvauth/internal/testserver"
	"github.com/pvpipe/pvauth/selfservice/confirmation"
)

// jcsVectors are RFC 8785 examples: the input as a client may send it and the canonical
// form the RFC gives for it (§3.2.2, §3.2.3 and Appendix B's numbers). The expected
// hashes are computed here from the RFC's text, not by the code under test.
var jcsVectors = []struct{ name, in, canon string }{
	{"rfc8785 3.2.2 (numbers, escapes, literals)",
		`{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
		  "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
		  "literals": [null, true, false]}`,
		`{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}`},
	{"rfc8785 3.2.3 (key order by UTF-16 code units)",
		`{"\u20ac": "Euro Sign", "\r": "Carriage Return", "\ufb33": "Hebrew Letter Dalet With Dagesh", "1": "One",
		  "\ud83d\ude00": "Emoji: Grinning Face", "\u0080": "Control", "\u00f6": "Latin Small Letter O With Diaeresis"}`,
		"{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u0080\":\"Control\",\"\u00f6\":\"Latin Small Letter O With Diaeresis\"," +
			"\"\u20ac\":\"Euro Sign\",\"\U0001F600\":\"Emoji: Grinning Face\",\"\ufb33\":\"Hebrew Letter Dalet With Dagesh\"}"},
	{"nested objects and arrays",
		`{"b": [{"z": 1, "a": {"y": 2, "x": [3, {"d": 4, "c": 5}]}}], "a": 1.50, "e": {}, "f": []}`,
		`{"a":1.5,"b":[{"a":{"x":[3,{"c":5,"d":4}],"y":2},"z":1}],"e":{},"f":[]}`},
	{"appendix B: -0", `{"n": -0}`, `{"n":0}`},
	{"appendix B: 1e+21", `{"n": 1E21}`, `{"n":1e+21}`},
	{"appendix B: 999999999999999900000", `{"n": 999999999999999900000}`, `{"n":999999999999999900000}`},
	{"appendix B: 9.999999999999997e+22", `{"n": 99999999999999970000000}`, `{"n":9.999999999999997e+22}`},
	{"appendix B: 1e+23", `{"n": 1e23}`, `{"n":1e+23}`},
	{"appendix B: 5e-324", `{"n": 4.9406564584124654e-324}`, `{"n":5e-324}`},
	{"appendix B: -5e-324", `{"n": -4.9406564584124654e-324}`, `{"n":-5e-324}`},
	{"appendix B: max double", `{"n": 1.7976931348623157e308}`, `{"n":1.7976931348623157e+308}`},
	{"appendix B: 2^53", `{"n": 9007199254740992}`, `{"n":9007199254740992}`},
	{"appendix B: 295147905179352830000", `{"n": 295147905179352825856}`, `{"n":295147905179352830000}`},
	{"appendix B: 0.000001", `{"n": 0.000001}`, `{"n":0.000001}`},
	{"appendix B: 9.999999999999997e-7", `{"n": 9.999999999999997e-7}`, `{"n":9.999999999999997e-7}`},
	{"appendix B: 333333333.3333332", `{"n": 333333333.33333320}`, `{"n":333333333.3333332}`},
	{"appendix B: 1e+21 minus", `{"n": 999999999999999868928}`, `{"n":999999999999999900000}`},
	{"appendix B: 1e-7", `{"n": 0.0000001}`, `{"n":1e-7}`},
	{"appendix B: 100", `{"n": 1e2}`, `{"n":100}`},
	{"unicode keys and escapes in values", `{"\u00e9t\u00e9": "caf\u00e9 \ud83d\ude00", "a\u0001": "\u001f", "z": "\u2028"}`,
		"{\"a\\u0001\":\"\\u001f\",\"z\":\"\u2028\",\"\u00e9t\u00e9\":\"caf\u00e9 \U0001F600\"}"},
}

func hashOfCanon(canon string) string {
	sum := sha256.Sum256([]byte(canon))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// The canonicaliser against the RFC's texts, without HTTP.
func TestActionHashRFC8785(t *testing.T) {
	for _, v := range jcsVectors {
		got, err := confirmation.ActionHash([]byte(v.in))
		if err != nil {
			t.Errorf("%s: %v", v.name, err)
			continue
		}
		if want := hashOfCanon(v.canon); got != want {
			t.Errorf("%s: actionHash %s, want %s (SHA-256 of %s)", v.name, got, want, v.canon)
		}
	}
	for _, empty := range []string{"", "null", "{}"} {
		if got, _ := confirmation.ActionHash([]byte(empty)); got != hashOfCanon("{}") {
			t.Errorf("payload %q: actionHash %s, want the hash of {}", empty, got)
		}
	}
}

// ctChallengeLines decodes a challenge into its six lines.
func ctChallengeLines(t testing.TB, challenge string) []string {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(challenge)
	if err != nil {
		t.Fatalf("challenge %q is not standard base64: %v", challenge, err)
	}
	if strings.HasSuffix(string(raw), "\n") {
		t.Errorf("challenge text ends with a newline: %q", raw)
	}
	lines := strings.Split(string(raw), "\n")
	if len(lines) != 6 {
		t.Fatalf("challenge text %q: %d lines, want 6", raw, len(lines))
	}
	return lines
}

func TestConfirmationChallengeNamesTheAction(t *testing.T) {
	testdb.ForEach(t, func(t *testing.T, dsn string) {
		srv, fcm := ctPushServer(t, dsn, nil)
		u := testkit.NewUser(t, srv, "conf-")
		d := ctNewDevice(t, srv, u, true)
		for _, v := range jcsVectors {
			r := srv.Public(t, http.MethodPost, ctInitiate, u.JWT, `{"actionType":"transfer_money","actionPayload":`+v.in+`}`)
			if !testkit.CheckStatus(t, v.name, r, 200) {
				continue
			}
			c := testkit.DataObject(t, r)
			id, want := testkit.Str(c["confirmationId"]), hashOfCanon(v.canon)
			if c["actionHash"] != want {
				t.Errorf("%s: initiate actionHash %v, want %s", v.name, c["actionHash"], want)
			}
			lines := ctChallengeLines(t, testkit.Str(c["challenge"]))
			exp, _ := time.Parse(time.RFC3339, testkit.Str(c["expiresAt"]))
			if lines[0] != "pvauth-confirmation-v1" || lines[1] != id || lines[2] != "transfer_money" || lines[3] != want ||
				lines[4] != strconv.FormatInt(exp.Unix(), 10) {
				t.Errorf("%s: challenge lines %q", v.name, lines)
			}
			if n, err := base64.RawURLEncoding.DecodeString(lines[5]); err != nil || len(n) != 32 {
				t.Errorf("%s: nonce %q (%v)", v.name, lines[5], err)
			}
			r = srv.Public(t, http.MethodGet, ctBase+"/"+id+"/status", u.JWT, nil)
			if testkit.CheckStatus(t, "status", r, 200) && testkit.DataObject(t, r)["actionHash"] != want {
				t.Errorf("%s: status actionHash %v", v.name, testkit.DataObject(t, r)["actionHash"])
			}
			r = srv.Admin(t, http.MethodGet, "/admin/confirmations/"+id, nil)
			if testkit.CheckStatus(t, "admin get", r, 200) && testkit.DataObject(t, r)["actionHash"] != want {
				t.Errorf("%s: admin actionHash %v", v.name, testkit.DataObject(t, r)["actionHash"])
			}
			if ms := ctPushesFor(fcm, id); len(ms) != 1 || ms[0].Data["actionHash"] != want {
				t.Errorf("%s: push %+v, want one with actionHash %s", v.name, ms, want)
			}
		}
		// No payload hashes as {}.
		c := ctInit(t, srv, u, "system_config", nil)
		if c["actionHash"] != hashOfCanon("{}") {
			t.Errorf("no payload: actionHash %v, want the hash of {}", c["actionHash"])
		}
		// A control character would break the challenge's lines.
		testkit.WantErrorWords(t, "actionType with a newline", srv.Public(t, http.MethodPost, ctInitiate, u.JWT,
			map[string]any{"actionType": "a\nb"}), 400, "actionType")

		// A signature over one confirmation's challenge never approves another, same
		// user and device.
		a := ctInit(t, srv, u, "transfer_money", map[string]any{"amount": 1})
		b := ctInit(t, srv, u, "transfer_money", map[string]any{"amount": 1})
		sigA := testkeys.SignChallenge(t, d.Key, testkit.Str(a["challenge"]))
		testkit.WantErrorWords(t, "A's signature on B", ctVerify(t, srv, u, testkit.Str(b["confirmationId"]), d, sigA), 401, "Invalid signature")
		if s := ctStatus(t, srv, u, testkit.Str(b["confirmationId"])); s != "pending" {
			t.Errorf("B after A's signature: %s", s)
		}
		testkit.CheckStatus(t, "A's signature on A", ctVerify(t, srv, u, testkit.Str(a["confirmationId"]), d, sigA), 200)
		testkit.CheckStatus(t, "B's signature on B", ctVerify(t, srv, u, testkit.Str(b["confirmationId"]), d, testkeys.SignChallenge(t, d.Key, testkit.Str(b["challenge"]))), 200)
	})
}

func ctVerifyCode(t testing.TB, srv *testserver.Server, u *testkit.User, id string, d *ctDevice, sig string, code any) *testserver.Response {
	t.Helper()
	body := map[string]any{"deviceId": d.ID, "signedChallenge": sig}
	if code != nil {
		body["matchCode"] = code
	}
	return srv.Public(t, http.MethodPost, ctBase+"/"+id+"/verify", u.JWT, body)
}

func ctWantMismatch(t testing.TB, what string, r *testserver.Response) {
	t.Helper()
	testkit.WantErrorWords(t, what, r, 400)
	if r.Status == 400 && testkit.JSONObject(t, r)["error"] != "match_code_mismatch" {
		t.Errorf("%s: error %v, want match_code_mismatch", what, testkit.JSONObject(t, r)["error"])
	}
}

func otherCode(code string) string {
	n, _ := strconv.Atoi(code)
	return fmt.Sprintf("%02d", (n+1)%100)
}

func TestConfirmationNumberMatching(t *testing.T) {
	testdb.ForEach(t, func(t *testing.T, dsn string) {
		srv, fcm := ctPushServer(t, dsn, map[string]any{"confirmation.number_matching": true})
		u := testkit.NewUser(t, srv, "conf-")
		d := ctNewDevice(t, srv, u, true)

		c := ctInit(t, srv, u, "transfer_money", map[string]any{"amount": 5})
		id, code := testkit.Str(c["confirmationId"]), testkit.Str(c["matchCode"])
		if !regexp.MustCompile(`^[0-9]{2}$`).MatchString(code) {
			t.Fatalf("matchCode %v, want two decimal digits", c["matchCode"])
		}
		for _, m := range ctPushesFor(fcm, id) {
			for k, v := range m.Data {
				if strings.Contains(strings.ToLower(k), "match") {
					t.Errorf("the push carries %s=%s", k, v)
				}
			}
		}
		if len(ctPushesFor(fcm, id)) != 1 {
			t.Errorf("pushes: %d, want 1", len(ctPushesFor(fcm, id)))
		}
		sig := testkeys.SignChallenge(t, d.Key, testkit.Str(c["challenge"]))
		ctWantMismatch(t, "missing code", ctVerifyCode(t, srv, u, id, d, sig, nil))
		ctWantMismatch(t, "wrong code", ctVerifyCode(t, srv, u, id, d, sig, otherCode(code)))
		if s := ctStatus(t, srv, u, id); s != "pending" {
			t.Errorf("after two wrong codes: %s, want pending", s)
		}
		testkit.CheckStatus(t, "right code", ctVerifyCode(t, srv, u, id, d, sig, code), 200)

		// The third wrong code rejects; the right one is too late then.
		c = ctInit(t, srv, u, "transfer_money", map[string]any{"amount": 6})
		id, code = testkit.Str(c["confirmationId"]), testkit.Str(c["matchCode"])
		sig = testkeys.SignChallenge(t, d.Key, testkit.Str(c["challenge"]))
		for i := 0; i < 3; i++ {
			ctWantMismatch(t, fmt.Sprintf("wrong code %d", i+1), ctVerifyCode(t, srv, u, id, d, sig, otherCode(code)))
		}
		if s := ctStatus(t, srv, u, id); s != "rejected" {
			t.Errorf("after three wrong codes: %s, want rejected", s)
		}
		testkit.WantErrorWords(t, "right code after the rejection", ctVerifyCode(t, srv, u, id, d, sig, code), 409)

		// Concurrent wrong codes: each counted once, exactly one rejection; afterwards
		// everything is 409.
		c = ctInit(t, srv, u, "transfer_money", map[string]any{"amount": 7})
		id, code = testkit.Str(c["confirmationId"]), testkit.Str(c["matchCode"])
		sig = testkeys.SignChallenge(t, d.Key, testkit.Str(c["challenge"]))
		var wg sync.WaitGroup
		statuses := make([]int, 8)
		for i := range statuses {
			wg.Add(1)
			go func() {
				defer wg.Done()
				statuses[i] = testkit.Send(srv.Client, http.MethodPost, srv.PublicURL+ctBase+"/"+id+"/verify", u.JWT,
					map[string]any{"deviceId": d.ID, "signedChallenge": sig, "matchCode": otherCode(code)}).Status
			}()
		}
		wg.Wait()
		mismatches := 0
		for _, st := range statuses {
			switch st {
			case 400:
				mismatches++
			case 409:
			default:
				t.Errorf("concurrent wrong code: status %d", st)
			}
		}
		if mismatches < 3 {
			t.Errorf("%d of 8 concurrent wrong codes were counted, want at least 3 (%v)", mismatches, statuses)
		}
		if s := ctStatus(t, srv, u, id); s != "rejected" {
			t.Errorf("after concurrent wrong codes: %s, want rejected", s)
		}
		_, events := ctAudit(t, srv, u.ID)
		rejections := 0
		for _, e := range events {
			md, _ := e["metadata"].(map[string]any)
			if e["type"] == "confirmation" && md["confirmationId"] == id && md["event"] == "reject" {
				rejections++
			}
		}
		if rejections != 1 {
			t.Errorf("%d rejection events for the concurrent wrong codes, want 1", rejections)
		}
	})
	// Off by default: no matchCode, and verify needs none.
	srv, _ := ctPushServer(t, "memory", nil)
	u := testkit.NewUser(t, srv, "conf-")
	d := ctNewDevice(t, srv, u, false)
	c := ctInit(t, srv, u, "transfer_money", nil)
	if _, ok := c["matchCode"]; ok {
		t.Errorf("matchCode without number matching: %v", c)
	}
	testkit.CheckStatus(t, "verify without number matching", ctVerify(t, srv, u, testkit.Str(c["confirmationId"]), d, testkeys.SignChallenge(t, d.Key, testkit.Str(c["challenge"]))), 200)
}

func TestConfirmationReceipt(t *testing.T) {
	testdb.ForEach(t, func(t *testing.T, dsn string) {
		srv, _ := ctPushServer(t, dsn, map[string]any{"ttl.confirmation_receipt": "2m"})
		u := testkit.NewUser(t, srv, "conf-")
		d := ctNewDevice(t, srv, u, false)
		c := ctInit(t, srv, u, "transfer_money", map[string]any{"amount": 50000, "to": "VCB-1"})
		id := testkit.Str(c["confirmationId"])

		r := srv.Public(t, http.MethodGet, ctBase+"/"+id+"/status", u.JWT, nil)
		if testkit.CheckStatus(t, "status", r, 200) {
			s := testkit.DataObject(t, r)
			if _, ok := s["receipt"]; ok {
				t.Errorf("a pending confirmation shows a receipt: %s", r.Body)
			}
			for _, k := range []string{"approvedAt", "deviceId", "consumedAt"} {
				if v, ok := s[k]; !ok || v != nil {
					t.Errorf("pending: %s = %v (present %v), want null", k, v, ok)
				}
			}
		}
		r = ctVerify(t, srv, u, id, d, testkeys.SignChallenge(t, d.Key, testkit.Str(c["challenge"])))
		if !testkit.CheckStatus(t, "verify", r, 200) {
			t.FailNow()
		}
		receipt := testkit.Str(testkit.DataObject(t, r)["receipt"])

		// Verify with the JWKS, as a relying service would, with go-jose.
		r = srv.Public(t, http.MethodGet, "/.well-known/jwks.json", "", nil)
		var jwks jose.JSONWebKeySet
		r.JSON(t, &jwks)
		jws, err := jose.ParseSigned(receipt)
		if err != nil {
			t.Fatalf("receipt %q: %v", receipt, err)
		}
		h := jws.Signatures[0].Protected
		if h.ExtraHeaders["typ"] != "pvauth-confirmation+jwt" || h.KeyID == "" {
			t.Errorf("receipt header: typ %v kid %q", h.ExtraHeaders["typ"], h.KeyID)
		}
		keys := jwks.Key(h.KeyID)
		if len(keys) != 1 {
			t.Fatalf("kid %q is not in the JWKS", h.KeyID)
		}
		payload, err := jws.Verify(keys[0])
		if err != nil {
			t.Fatalf("receipt does not verify with the JWKS: %v", err)
		}
		var cl map[string]any
		if err := json.Unmarshal(payload, &cl); err != nil {
			t.Fatal(err)
		}
		st := srv.Public(t, http.MethodGet, ctBase+"/"+id+"/status", u.JWT, nil)
		s := testkit.DataObject(t, st)
		approvedAt, err := time.Parse(time.RFC3339, testkit.Str(s["approvedAt"]))
		if err != nil {
			t.Errorf("approvedAt %v", s["approvedAt"])
		}
		iat, _ := cl["iat"].(float64)
		exp, _ := cl["exp"].(float64)
		amr, _ := cl["amr"].([]any)
		if cl["iss"] != srv.Config.Issuer() || cl["sub"] != strconv.FormatInt(u.ID, 10) || cl["jti"] != id ||
			int64(iat) != approvedAt.Unix() || int64(exp) != int64(iat)+120 || cl["action_type"] != "transfer_money" ||
			cl["action_hash"] != c["actionHash"] || cl["did"] != d.ID || len(amr) != 1 || amr[0] != "hwk" {
			t.Errorf("receipt claims %v (approvedAt %v)", cl, approvedAt)
		}
		if s["status"] != "approved" || s["deviceId"] != d.ID || s["consumedAt"] != nil {
			t.Errorf("status after approval: %s", st.Body)
		}
		// The status carries a receipt with the same claims while approved.
		if rs := testkit.Str(s["receipt"]); rs == "" {
			t.Errorf("status of an approved confirmation has no receipt: %s", st.Body)
		} else if j, err := jose.ParseSigned(rs); err != nil {
			t.Errorf("status receipt: %v", err)
		} else if p, err := j.Verify(keys[0]); err != nil || string(p) != string(payload) {
			t.Errorf("status receipt claims %s, verify's %s (%v)", p, payload, err)
		}
		// Never an access token.
		testkit.WantErrorWords(t, "receipt as a bearer token on /me", srv.Public(t, http.MethodGet, "/api/v1/auth/me", receipt, nil), 401)
		testkit.WantErrorWords(t, "receipt as a bearer token on status", srv.Public(t, http.MethodGet, ctBase+"/"+id+"/status", receipt, nil), 401)
		if in := testkit.IntrospectClaims(t, srv, receipt, ""); in["active"] != false {
			t.Errorf("introspection of a receipt: %v, want inactive", in)
		}
		if in := testkit.IntrospectClaims(t, srv, u.JWT, ""); in["active"] != true {
			t.Errorf("introspection of the access token: %v, want active (the check above means something)", in)
		}
	})
}

func ctConsume(srv *testserver.Server, id string) *testserver.Response {
	return testkit.Send(srv.Client, http.MethodPost, srv.AdminURL+"/admin/confirmations/"+id+"/consume", "", nil)
}

// replicas returns a second registry on the same database for PostgreSQL (a replica),
// or srv itself for SQLite (one process owns the file).
func replicas(t *testing.T, srv *testserver.Server, dsn string) *testserver.Server {
	if !strings.HasPrefix(dsn, "postgres") {
		return srv
	}
	// Both registries migrate: the second finds nothing to do.
	second := testserver.Start(t, dsn, nil)
	t.Cleanup(second.Client.CloseIdleConnections)
	return second
}

func TestConfirmationConsume(t *testing.T) {
	testdb.ForEach(t, func(t *testing.T, dsn string) {
		srv, _ := ctPushServer(t, dsn, nil)
		other := replicas(t, srv, dsn)
		u := testkit.NewUser(t, srv, "conf-")
		d := ctNewDevice(t, srv, u, false)

		pending := ctInit(t, srv, u, "transfer_money", nil)
		testkit.WantErrorWords(t, "consume a pending confirmation", ctConsume(srv, testkit.Str(pending["confirmationId"])), 409)
		rejected := ctInit(t, srv, u, "transfer_money", nil)
		testkit.CheckStatus(t, "reject", ctReject(t, srv, u, testkit.Str(rejected["confirmationId"]), nil), 200)
		testkit.WantErrorWords(t, "consume a rejected confirmation", ctConsume(srv, testkit.Str(rejected["confirmationId"])), 409)
		testkit.WantErrorWords(t, "consume an unknown confirmation", ctConsume(srv, "6f1c1a60-1f3e-4c36-9b1d-1b0d3f0e0a11"), 404)
		testkit.WantErrorWords(t, "consume a non-UUID", ctConsume(srv, "nope"), 404)

		c := ctInit(t, srv, u, "transfer_money", map[string]any{"amount": 9})
		id := testkit.Str(c["confirmationId"])
		testkit.CheckStatus(t, "verify", ctVerify(t, srv, u, id, d, testkeys.SignChallenge(t, d.Key, testkit.Str(c["challenge"]))), 200)
		const n = 20
		results := testkit.RaceResponses(n, func(i int) *testserver.Response {
			s := srv
			if i%2 == 1 {
				s = other
			}
			return ctConsume(s, id)
		})
		var won *testserver.Response
		for i, r := range results {
			switch r.Status {
			case 200:
				if won != nil {
					t.Errorf("a second consume succeeded: %s", r.Body)
				}
				won = r
			case 409:
			default:
				t.Errorf("consume %d: %d %s", i, r.Status, r.Body)
			}
		}
		if won == nil {
			t.Fatalf("no consume succeeded")
		}
		v := testkit.DataObject(t, won)
		p, _ := v["actionPayload"].(map[string]any)
		if v["confirmationId"] != id || v["userId"] != json.Number(strconv.FormatInt(u.ID, 10)) || v["actionType"] != "transfer_money" || p["amount"] != json.Number("9") ||
			v["actionHash"] != c["actionHash"] || v["deviceId"] != d.ID || testkit.Str(v["approvedAt"]) == "" || testkit.Str(v["consumedAt"]) == "" {
			t.Errorf("consume answer: %s", won.Body)
		}
		testkit.WantErrorWords(t, "consume again", ctConsume(other, id), 409)
		r := srv.Admin(t, http.MethodGet, "/admin/confirmations/"+id, nil)
		if testkit.CheckStatus(t, "admin get", r, 200) {
			a := testkit.DataObject(t, r)
			if a["consumedAt"] != v["consumedAt"] || a["status"] != "approved" || a["approvedAt"] != v["approvedAt"] {
				t.Errorf("admin get after consume: %s", r.Body)
			}
		}
		other.Registry.AuditLogger().Flush()
		_, events := ctAudit(t, srv, u.ID)
		consumed := 0
		for _, e := range events {
			md, _ := e["metadata"].(map[string]any)
			if e["type"] == "confirmation" && md["event"] == "consume" && md["confirmationId"] == id && e["result"] == "success" {
				consumed++
			}
		}
		if consumed != 1 {
			t.Errorf("%d consume events, want 1", consumed)
		}
	})
}
