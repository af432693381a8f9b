package secretbox_test

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/pvpipe/pvauth/x/secretbox"
)

var (
	keyA = strings.Repeat("a", 32)
	keyB = "0123456789abcdef0123456789abcdef"
	keyC = "ZYXWVUTSRQPONMLKJIHGFEDCBA987654"
)

func mustBox(t testing.TB, keys ...string) *secretbox.Box {
	t.Helper()
	b, err := secretbox.New(keys)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRoundTrip(t *testing.T) {
	b := mustBox(t, keyA)
	for _, pt := range [][]byte{[]byte("JBSWY3DPEHPK3PXP"), {}, bytes.Repeat([]byte{0, 1, 2, 255}, 1000)} {
		sealed, err := b.Seal(pt, []byte("identity:42"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(sealed, "v1.") {
			t.Fatalf("sealed value %q lacks the format prefix", sealed)
		}
		if len(pt) > 0 && strings.Contains(sealed, string(pt)) {
			t.Fatal("plaintext visible in the sealed value")
		}
		got, err := b.Open(sealed, []byte("identity:42"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, pt) {
			t.Fatalf("round trip changed the value: %q", got)
		}
	}
	// A nil AAD is the same as an empty one.
	sealed, err := b.Seal([]byte("x"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := b.Open(sealed, []byte{}); err != nil || string(got) != "x" {
		t.Fatalf("nil/empty AAD: %q %v", got, err)
	}
}

func TestSealIsRandomized(t *testing.T) {
	b := mustBox(t, keyA)
	s1, _ := b.Seal([]byte("same"), nil)
	s2, _ := b.Seal([]byte("same"), nil)
	if s1 == s2 {
		t.Fatal("two seals of the same value are identical: the nonce is not random")
	}
}

func TestAADMismatch(t *testing.T) {
	b := mustBox(t, keyA)
	sealed, err := b.Seal([]byte("totp-secret"), []byte("identity:42"))
	if err != nil {
		t.Fatal(err)
	}
	for _, aad := range [][]byte{[]byte("identity:43"), nil, []byte("identity:42 ")} {
		if _, err := b.Open(sealed, aad); err == nil {
			t.Errorf("opened with AAD %q", aad)
		}
	}
}

func TestRotation(t *testing.T) {
	old := mustBox(t, keyA)
	sealedOld, err := old.Seal([]byte("stored before rotation"), []byte("row"))
	if err != nil {
		t.Fatal(err)
	}
	rotated := mustBox(t, keyB, keyA)
	got, err := rotated.Open(sealedOld, []byte("row"))
	if err != nil || string(got) != "stored before rotation" {
		t.Fatalf("value sealed with the old key does not open after rotation: %q %v", got, err)
	}
	sealedNew, err := rotated.Seal([]byte("stored after rotation"), []byte("row"))
	if err != nil {
		t.Fatal(err)
	}
	// The first key encrypts: only boxes holding keyB can open the new value.
	if _, err := old.Open(sealedNew, []byte("row")); err == nil {
		t.Fatal("a box without the new key opened a value sealed after rotation")
	}
	if got, err := mustBox(t, keyB).Open(sealedNew, []byte("row")); err != nil || string(got) != "stored after rotation" {
		t.Fatalf("new key alone: %q %v", got, err)
	}
	// Three keys, the right one in the middle.
	if got, err := mustBox(t, keyC, keyA, keyB).Open(sealedOld, []byte("row")); err != nil || string(got) != "stored before rotation" {
		t.Fatalf("three keys: %q %v", got, err)
	}
	// Once the old key is dropped the old value no longer opens.
	if _, err := mustBox(t, keyB, keyC).Open(sealedOld, []byte("row")); err == nil {
		t.Fatal("opened without the key it was sealed with")
	}
}

func TestKeyIDIsOnlyAHint(t *testing.T) {
	// The key id names the key that sealed the value; a wrong id must not stop the
	// right key from being tried, and must not leak the key.
	b := mustBox(t, keyA, keyB)
	sealed, _ := mustBox(t, keyB).Seal([]byte("v"), nil)
	parts := strings.SplitN(sealed, ".", 3)
	if len(parts) != 3 || strings.Contains(parts[1], keyB) {
		t.Fatalf("unexpected layout %q", sealed)
	}
	forged := parts[0] + ".AAAAAA." + parts[2]
	if got, err := b.Open(forged, nil); err != nil || string(got) != "v" {
		t.Fatalf("wrong key id: %q %v", got, err)
	}
}

func TestNewErrors(t *testing.T) {
	for name, keys := range map[string][]string{
		"nil":              nil,
		"empty":            {},
		"short":            {strings.Repeat("k", 31)},
		"long":             {strings.Repeat("k", 33)},
		"empty key":        {""},
		"second bad":       {keyA, "short"},
		"multibyte 32 chr": {strings.Repeat("é", 32)},
	} {
		t.Run(name, func(t *testing.T) {
			b, err := secretbox.New(keys)
			if err == nil || b != nil {
				t.Fatalf("New(%d keys) succeeded", len(keys))
			}
			if len(keys) > 0 && !strings.Contains(err.Error(), "32 bytes") {
				t.Fatalf("error %q does not explain the length", err)
			}
		})
	}
	if _, err := secretbox.New([]string{keyA, "short"}); err == nil || !strings.Contains(err.Error(), "key 1") {
		t.Fatalf("error does not name the bad key index: %v", err)
	}
}

func TestTamperedFails(t *testing.T) {
	b := mustBox(t, keyA, keyB)
	sealed, err := b.Seal([]byte("fcm-token-value"), []byte("device:1"))
	if err != nil {
		t.Fatal(err)
	}
	i := strings.LastIndexByte(sealed, '.')
	raw, err := base64.RawURLEncoding.DecodeString(sealed[i+1:])
	if err != nil {
		t.Fatal(err)
	}
	// Flip each byte in turn: nonce, ciphertext and tag are all authenticated.
	for pos := range raw {
		mod := bytes.Clone(raw)
		mod[pos] ^= 0x01
		s := sealed[:i+1] + base64.RawURLEncoding.EncodeToString(mod)
		if _, err := b.Open(s, []byte("device:1")); err == nil {
			t.Fatalf("flipping byte %d went unnoticed", pos)
		}
	}
	truncated := sealed[:i+1] + base64.RawURLEncoding.EncodeToString(raw[:len(raw)-1])
	extended := sealed[:i+1] + base64.RawURLEncoding.EncodeToString(append(bytes.Clone(raw), 0))
	for name, s := range map[string]string{
		"truncated":      truncated,
		"extended":       extended,
		"empty":          "",
		"no prefix":      sealed[3:],
		"other version":  "v2" + sealed[2:],
		"no dot":         "v1.abc",
		"bad base64":     sealed[:i+1] + "!!!",
		"std base64":     sealed[:i+1] + base64.StdEncoding.EncodeToString(raw),
		"shorter nonce":  sealed[:i+1] + base64.RawURLEncoding.EncodeToString(raw[:5]),
		"nonce only":     sealed[:i+1] + base64.RawURLEncoding.EncodeToString(raw[:12]),
		"empty payload":  sealed[:i+1],
		"plaintext":      "fcm-token-value",
		"whitespace pad": sealed + " ",
	} {
		if _, err := b.Open(s, []byte("device:1")); err == nil {
			t.Errorf("%s: opened", name)
		}
	}
}

// FuzzOpen: Open must never panic on any input, and a value that opens with the fuzzed
// AAD must be one of the values this test sealed.
func FuzzOpen(f *testing.F) {
	b := mustBox(f, keyA, keyB)
	valid, err := b.Seal([]byte("seed"), []byte("aad"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid, []byte("aad"))
	f.Add(valid, []byte("other"))
	f.Add("v1.", []byte(nil))
	f.Add("v1..", []byte(nil))
	f.Add("v1.x.", []byte(nil))
	f.Add("v1.x.AAAA", []byte(nil))
	f.Add("v1.x."+strings.Repeat("A", 40), []byte(nil))
	f.Add("", []byte(nil))
	f.Fuzz(func(t *testing.T, sealed string, aad []byte) {
		pt, err := b.Open(sealed, aad)
		if err != nil {
			if pt != nil {
				t.Fatalf("error %v with plaintext %q", err, pt)
			}
			return
		}
		if string(pt) != "seed" || string(aad) != "aad" {
			t.Fatalf("opened a value that was never sealed: %q (aad %q)", pt, aad)
		}
	})
}
