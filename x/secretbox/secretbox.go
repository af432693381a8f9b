// Package secretbox encrypts fields at rest with AES-256-GCM under a rotating key list:
// the first key encrypts, every key decrypts.
package secretbox

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// prefix marks the format so a later change of algorithm can be told apart.
const prefix = "v1."

// Box holds the AEADs built from the configured keys.
type Box struct {
	aeads []cipher.AEAD
	ids   []string
}

// New builds a Box. Each key must be exactly 32 bytes (used as is); the first encrypts.
func New(keys []string) (*Box, error) {
	if len(keys) == 0 {
		return nil, errors.New("secretbox: at least one key is required")
	}
	b := &Box{}
	for i, k := range keys {
		if len(k) != 32 {
			return nil, fmt.Errorf("secretbox: key %d must be exactly 32 bytes, got %d", i, len(k))
		}
		blk, err := aes.NewCipher([]byte(k))
		if err != nil {
			return nil, err
		}
		a, err := cipher.NewGCM(blk)
		if err != nil {
			return nil, err
		}
		b.aeads = append(b.aeads, a)
		b.ids = append(b.ids, keyID([]byte(k)))
	}
	return b, nil
}

// Seal encrypts plaintext; aad binds the ciphertext to its row (e.g. the owner's id) so a
// value cannot be moved to another row.
func (b *Box) Seal(plaintext, aad []byte) (string, error) {
	a := b.aeads[0]
	nonce := make([]byte, a.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	out := a.Seal(nonce, nonce, plaintext, aad)
	return prefix + b.ids[0] + "." + base64.RawURLEncoding.EncodeToString(out), nil
}

// Open decrypts a value produced by Seal with any configured key.
func (b *Box) Open(sealed string, aad []byte) ([]byte, error) {
	if !strings.HasPrefix(sealed, prefix) {
		return nil, errors.New("secretbox: unknown format")
	}
	rest := sealed[len(prefix):]
	dot := strings.IndexByte(rest, '.')
	if dot < 0 {
		return nil, errors.New("secretbox: malformed value")
	}
	kid, data := rest[:dot], rest[dot+1:]
	raw, err := base64.RawURLEncoding.DecodeString(data)
	if err != nil {
		return nil, errors.New("secretbox: malformed value")
	}
	// Try the key named by its id first, then all (ids are short hashes and may collide).
	order := make([]int, 0, len(b.aeads))
	for i := range b.aeads {
		if b.ids[i] == kid {
			order = append([]int{i}, order...)
		} else {
			order = append(order, i)
		}
	}
	for _, i := range order {
		a := b.aeads[i]
		if len(raw) < a.NonceSize() {
			return nil, errors.New("secretbox: malformed value")
		}
		if pt, err := a.Open(nil, raw[:a.NonceSize()], raw[a.NonceSize():], aad); err == nil {
			return pt, nil
		}
	}
	return nil, errors.New("secretbox: no key decrypts the value")
}

// keyID names a key without revealing it, so Open tries the right key first after a rotation.
func keyID(key []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("pvauth-secretbox-key-id"))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:4])
}
