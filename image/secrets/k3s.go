package secrets

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
)

// K3sFile is the k3s cluster's token in the lab's secrets directory.
const K3sFile = "k3s.json"

// k3sTokenLen is the token's randomness in bytes: twice what k3s gives a
// token it makes itself (util.Random(16), hex), since kiln's is kept for
// the lab's life.
const k3sTokenLen = 32

// K3sToken is the k3s cluster's token: the secret the server and every
// agent share (k3s's --token, here through --token-file). k3s accepts any
// string as a token; kiln's is 32 random bytes in lowercase hex, a
// "<PASSWORD>" in k3s's own terms, so it never holds k3s's "::" or ":"
// separators. It never shows in fmt or slog output, nor in JSON.
type K3sToken struct{ b [k3sTokenLen]byte }

// The token never shows in output, whatever the verb.
func (K3sToken) String() string             { return "secrets.K3sToken" + redacted }
func (K3sToken) GoString() string           { return "secrets.K3sToken" + redacted }
func (K3sToken) LogValue() slog.Value       { return slog.StringValue(redacted) }
func (K3sToken) Format(f fmt.State, _ rune) { io.WriteString(f, "secrets.K3sToken"+redacted) }

// Hex is the token as k3s reads it from its token file. It is the secret
// itself: write it only into files that are secret too.
func (t K3sToken) Hex() string { return hex.EncodeToString(t.b[:]) }

// k3sFile is k3s.json.
type k3sFile struct {
	Token string `json:"token"`
}

// k3sRemedy: a k3s server encrypts its bootstrap data with the token it
// first started with and agents join with it, so a new token locks them
// all out (k3s changes it only through `k3s token rotate`).
const k3sRemedy = "restore the file from a backup: the k3s server and its agents keep the token they started with; remove it only if no compute machine is installed yet"

// K3s loads the lab's k3s token from dir, generating it the first time
// (dir is created 0700 if missing). A second call returns the same token
// and leaves the file untouched.
func K3s(dir string) (K3sToken, error) {
	if err := ensureDir(dir); err != nil {
		return K3sToken{}, err
	}
	return once(filepath.Join(dir, K3sFile), encodeK3s, loadK3s)
}

func encodeK3s() ([]byte, error) {
	var t K3sToken
	rand.Read(t.b[:]) // never fails (crypto/rand since Go 1.24)
	b, err := json.MarshalIndent(k3sFile{Token: t.Hex()}, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("secrets: %w", err)
	}
	return append(b, '\n'), nil
}

func loadK3s(path string) (K3sToken, error) {
	b, err := readPrivate(path)
	if err != nil {
		return K3sToken{}, err
	}
	var f k3sFile
	if err := strictJSON(b, &f); err != nil {
		return K3sToken{}, damaged(path, err, k3sRemedy)
	}
	t, err := parseK3sToken(f.Token)
	if err != nil {
		return K3sToken{}, damaged(path, err, k3sRemedy)
	}
	return t, nil
}

// parseK3sToken accepts kiln's form only, lowercase hex of 32 bytes; its
// errors never quote s.
func parseK3sToken(s string) (K3sToken, error) {
	if s == "" {
		return K3sToken{}, errors.New("token is missing")
	}
	b, err := hex.DecodeString(s)
	// Decoding takes upper case too; kiln writes lower case only.
	if err != nil || len(b) != k3sTokenLen || hex.EncodeToString(b) != s {
		return K3sToken{}, fmt.Errorf("token is not %d bytes in lowercase hex", k3sTokenLen)
	}
	var t K3sToken
	copy(t.b[:], b)
	return t, nil
}
