package confirmation_test

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/pvpipe/pvauth/selfservice/confirmation"
)

// FuzzActionHash: whatever a client sends as actionPayload, checking and hashing it never
// panics; an accepted payload has a 43-character hash that does not depend on how the
// JSON was laid out (indentation, key order is the canonicaliser's business).
//
//	go test -tags sqlite -run XXX -fuzz FuzzActionHash -fuzztime 10s ./selfservice/confirmation/
func FuzzActionHash(f *testing.F) {
	for _, v := range jcsVectors {
		f.Add([]byte(v.in))
	}
	for _, s := range []string{`{}`, `null`, `[]`, `{"a":1e400}`, `{"a":"\ud800"}`, `{"a":1,"a":2}`, `{"a":[{"b":{}}]}`, `{"a":-0.0}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		p, err := confirmation.NormalizePayload(in)
		if err != nil {
			return
		}
		h, err := confirmation.ActionHash(p)
		if err != nil {
			return
		}
		if len(h) != 43 {
			t.Fatalf("hash %q of %q", h, p)
		}
		var ind bytes.Buffer
		if json.Indent(&ind, p, "", "  ") == nil {
			if h2, err := confirmation.ActionHash(ind.Bytes()); err != nil || h2 != h {
				t.Fatalf("indented %q hashes to %q (%v), compact to %q", ind.Bytes(), h2, err, h)
			}
		}
	})
}
