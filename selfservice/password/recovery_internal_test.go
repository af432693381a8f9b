package password

import (
	"crypto/sha256"
	"encoding/hex"
	"math"
	"slices"
	"strings"
	"testing"
)

// Recovery codes carry at least 80 bits and are stored keyed and bound to the identity;
// codes hashed under a rotated-out key and legacy unkeyed hashes still match.
func TestRecoveryCodes(t *testing.T) {
	const oldSecret, newSecret = "old-system-secret-0123456789abcdef0123", "new-system-secret-0123456789abcdef0123"
	h := newRecoveryHasher([]string{oldSecret})
	codes, hashes, err := h.newCodes(42)
	if err != nil {
		t.Fatal(err)
	}
	if len(codes) != 10 || len(hashes) != 10 {
		t.Fatalf("%d codes, %d hashes", len(codes), len(hashes))
	}
	seen := map[string]bool{}
	for i, c := range codes {
		n := normalizeRecoveryCode(c)
		if bits := float64(len(n)) * math.Log2(float64(len(recoveryAlphabet))); bits < 80 {
			t.Fatalf("code %q carries %.1f bits, want ≥ 80", c, bits)
		}
		if strings.Trim(n, recoveryAlphabet) != "" || seen[n] {
			t.Fatalf("bad or repeated code %q", c)
		}
		seen[n] = true
		legacy := sha256.Sum256([]byte("pvauth-recovery:" + n))
		plain := sha256.Sum256([]byte(n))
		if hashes[i] == hex.EncodeToString(legacy[:]) || hashes[i] == hex.EncodeToString(plain[:]) {
			t.Fatalf("code %q stored as an unkeyed hash", c)
		}
		// Bound to the identity, and independent of case and dashes.
		if h.hash(43, c) == hashes[i] {
			t.Fatal("the same code hashes alike for another identity")
		}
		if h.hash(42, strings.ToUpper(strings.ReplaceAll(c, "-", " "))) != hashes[i] {
			t.Fatal("normalization: upper case / spaces give another hash")
		}
	}
	// After rotation (new key first), the stored hash is still among the candidates.
	rotated := newRecoveryHasher([]string{newSecret, oldSecret})
	if rotated.hash(42, codes[0]) == hashes[0] {
		t.Fatal("the new key hashes like the old one")
	}
	if !slices.Contains(rotated.candidates(42, codes[0]), hashes[0]) {
		t.Fatal("a code stored under the rotated-out key no longer matches")
	}
	// A code stored by an earlier version (unkeyed SHA-256) still matches.
	legacy := sha256.Sum256([]byte("pvauth-recovery:" + normalizeRecoveryCode("abcde-fghjk")))
	if !slices.Contains(rotated.candidates(42, "ABCDE-FGHJK"), hex.EncodeToString(legacy[:])) {
		t.Fatal("legacy hashes do not match")
	}
	// Without the key, nothing matches.
	if slices.Contains(newRecoveryHasher([]string{newSecret}).candidates(42, codes[0])[:1], hashes[0]) {
		t.Fatal("another key matches")
	}
}
