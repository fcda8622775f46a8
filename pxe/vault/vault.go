// Package vault owns the gate's part in the lab's Vault (DESIGN.md §10):
// it initialises Vault once for the lab, keeps the unseal key and the root
// token in the gate's state (0600 in a 0700 directory, never on a storage
// node's disk), and unseals a storage node's Vault when that node asks
// after a reboot (unseal: gate) or when the operator runs `kiln vault
// unseal` (unseal: manual). It speaks Vault's HTTP API (sys/init,
// sys/seal-status, sys/unseal) over TLS, trusting the lab CA only.
package vault

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kilnlab/kiln/pxe/state"
)

// Port is Vault's API port on every storage node (roles renders its
// listener there).
const Port = 8200

// InitFile holds the result of the lab's one Vault initialisation, in
// Keeper.Dir.
const InitFile = "init.json"

// AttemptFile, in Keeper.Dir, records a sys/init the gate sent and has
// no keys from yet: written durably before the request, removed once the
// keys are. Found beside no InitFile, it says the lab's Vault storage
// holds only that failed attempt, which no one can ever unseal (Vault
// initialises its storage first and answers last: seen in a rehearsal,
// Consul lost its leader during Vault's post-unseal setup, and sys/init
// failed with Vault initialised). That storage may then be wiped, by
// the node whose Vault was asked (ErrResetStorage), and the lab's Vault
// initialised again.
const AttemptFile = "init-attempt.json"

// Errors the caller decides on.
var (
	// ErrInitialisedElsewhere: Vault says it is initialised, but the
	// gate holds no keys for it (someone ran `vault operator init` by
	// hand, or the gate's state was lost). kiln never guesses keys.
	ErrInitialisedElsewhere = errors.New("vault is initialised, but the gate holds no unseal key for it")
	// ErrNotInitialised: the operation needs the lab's keys and Vault
	// has not been initialised yet.
	ErrNotInitialised = errors.New("vault has not been initialised yet")
	// ErrResetStorage: the gate's own sys/init on this Vault failed
	// after Vault had initialised its storage (AttemptFile); the node
	// must wipe Vault's storage, restart its Vault and ask again.
	ErrResetStorage = errors.New("the lab's Vault init failed after Vault initialised its storage: it holds nothing anyone can unseal")
	// ErrResetPending: another node's Vault storage reset
	// (ErrResetStorage) is under way; this node restarts its Vault, so
	// that it reads the storage afresh, and asks again.
	ErrResetPending = errors.New("the lab's Vault storage is being reset through another node after a failed init")
)

// CallTimeout bounds one request to a Vault, but for sys/init.
const CallTimeout = 30 * time.Second

// InitTimeout bounds sys/init. Vault answers it once, with the only copy
// of the unseal key and the root token: the request is never abandoned
// because whoever asked went away, or the lab's Vault could never be
// unsealed again. (Seen in a rehearsal: three storage nodes under TCG,
// Vault took more than the asking node's 30 s to initialise, the node's
// request was cancelled, and the gate's sys/init with it.)
const InitTimeout = 10 * time.Minute

// Keys are what the one initialisation returned. One share, threshold
// one: every share would sit on this gate anyway, so splitting the key
// would protect nothing; an operator who wants shares held by people
// rekeys Vault (`vault operator rekey`) and unseals by hand.
type Keys struct {
	Unseal    []string `json:"keys_base64"`
	RootToken string   `json:"root_token"`
}

const redacted = "[secret]"

// Keys never show in fmt or slog output.
func (Keys) String() string             { return "vault.Keys" + redacted }
func (Keys) GoString() string           { return "vault.Keys" + redacted }
func (Keys) LogValue() slog.Value       { return slog.StringValue(redacted) }
func (Keys) Format(f fmt.State, _ rune) { io.WriteString(f, "vault.Keys"+redacted) }

// SealStatus is sys/seal-status's answer, the part kiln reads.
type SealStatus struct {
	Initialized bool   `json:"initialized"`
	Sealed      bool   `json:"sealed"`
	Threshold   int    `json:"t"`
	Shares      int    `json:"n"`
	Progress    int    `json:"progress"`
	Version     string `json:"version"`
}

// Keeper holds the lab's Vault keys on the gate. Its methods are safe for
// concurrent use; one initialisation at a time, so two storage nodes
// asking at once cannot both initialise.
type Keeper struct {
	// Dir is the gate's Vault state directory (0700), e.g.
	// <state>/vault.
	Dir string
	// HTTP talks to the Vaults; its transport must trust the lab CA
	// (NewClient).
	HTTP *http.Client
	Log  *slog.Logger
	mu   sync.Mutex
}

// Unseal makes the Vault at addr (https://host:8200) unsealed: it
// initialises Vault first when the lab never did (and records the keys
// before anything else), then hands it the unseal key. An unsealed Vault
// is left alone.
func (k *Keeper) Unseal(ctx context.Context, addr string) (SealStatus, error) {
	if err := k.lock(ctx); err != nil {
		return SealStatus{}, fmt.Errorf("vault: waiting for the unseal under way: %w", err)
	}
	defer k.mu.Unlock()
	st, err := k.status(ctx, addr)
	if err != nil {
		if tornInit(err) {
			if _, lerr := k.load(); errors.Is(lerr, ErrNotInitialised) {
				return st, errors.Join(err, k.initialisedWithoutKeys(addr))
			}
		}
		return SealStatus{}, err
	}
	if !st.Sealed {
		return st, nil
	}
	keys, err := k.load()
	switch {
	case errors.Is(err, ErrNotInitialised) && !st.Initialized:
		// From here on, whether the asker waits or not (InitTimeout):
		// the keys, then this first unseal.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), InitTimeout)
		defer cancel()
		if keys, err = k.initialise(ctx, addr); err != nil {
			return SealStatus{}, err
		}
	case errors.Is(err, ErrNotInitialised):
		return st, k.initialisedWithoutKeys(addr)
	case err != nil:
		return st, err
	}
	for _, key := range keys.Unseal {
		if err := k.call(ctx, http.MethodPut, addr+"/v1/sys/unseal", map[string]string{"key": key}, &st); err != nil {
			return st, fmt.Errorf("unseal %s: %w", addr, err)
		}
		if !st.Sealed {
			break
		}
	}
	if st.Sealed {
		return st, fmt.Errorf("unseal %s: still sealed after every key the gate holds (%d of %d)", addr, st.Progress, st.Threshold)
	}
	k.Log.Info("vault: unsealed", "vault", addr)
	return st, nil
}

// lock takes k.mu, or gives up when ctx ends: an asker that goes away
// while another node's Vault is being initialised does not queue.
func (k *Keeper) lock(ctx context.Context) error {
	for !k.mu.TryLock() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

// Status asks the Vault at addr whether it is initialised and sealed
// (sys/seal-status needs no token).
func (k *Keeper) Status(ctx context.Context, addr string) (SealStatus, error) {
	return k.status(ctx, addr)
}

func (k *Keeper) status(ctx context.Context, addr string) (SealStatus, error) {
	var st SealStatus
	if err := k.call(ctx, http.MethodGet, addr+"/v1/sys/seal-status", nil, &st); err != nil {
		return SealStatus{}, fmt.Errorf("vault status %s: %w", addr, err)
	}
	return st, nil
}

// RootToken returns the root token of the lab's Vault, for the operator
// (`kiln vault root-token`); ErrNotInitialised before the first init.
func (k *Keeper) RootToken() (string, error) {
	keys, err := k.load()
	if err != nil {
		return "", err
	}
	return keys.RootToken, nil
}

// Initialised reports whether the gate holds the lab's keys.
func (k *Keeper) Initialised() bool {
	_, err := os.Stat(filepath.Join(k.Dir, InitFile))
	return err == nil
}

// attempt is AttemptFile's content.
type attempt struct {
	Vault string    `json:"vault"`
	At    time.Time `json:"at"`
}

// initialisedWithoutKeys is the error for a Vault at addr that is
// initialised while the gate holds no keys: a reset when the gate's own
// attempt failed (on this Vault, or on another), else someone else's.
func (k *Keeper) initialisedWithoutKeys(addr string) error {
	b, err := os.ReadFile(filepath.Join(k.Dir, AttemptFile))
	if err != nil {
		return fmt.Errorf("%s: %w", addr, ErrInitialisedElsewhere)
	}
	var a attempt
	if err := json.Unmarshal(b, &a); err != nil || a.Vault == "" {
		return fmt.Errorf("%s: %w", addr, ErrInitialisedElsewhere)
	}
	if a.Vault == addr {
		return fmt.Errorf("%s (sys/init sent %s): %w", addr, a.At.UTC().Format(time.RFC3339), ErrResetStorage)
	}
	return fmt.Errorf("%s, through %s: %w", addr, a.Vault, ErrResetPending)
}

// initialise runs sys/init on addr and writes the keys durably before
// returning them: a gate that loses power after Vault answered but before
// the keys are on its disk would leave a Vault no one can unseal, so the
// window is one write and one fsync. AttemptFile is on disk before the
// request goes, and goes once the keys are.
func (k *Keeper) initialise(ctx context.Context, addr string) (Keys, error) {
	if err := os.MkdirAll(k.Dir, 0o700); err != nil {
		return Keys{}, fmt.Errorf("vault: %w", err)
	}
	a, err := json.Marshal(attempt{Vault: addr, At: time.Now().UTC()})
	if err != nil {
		return Keys{}, err
	}
	if err := k.writeFile(AttemptFile, a); err != nil {
		return Keys{}, err
	}
	var keys Keys
	req := map[string]int{"secret_shares": 1, "secret_threshold": 1}
	if err := k.send(ctx, 0, "", http.MethodPut, addr+"/v1/sys/init", req, &keys); err != nil {
		return Keys{}, fmt.Errorf("vault init %s: %w", addr, err)
	}
	if len(keys.Unseal) == 0 || keys.RootToken == "" {
		return Keys{}, fmt.Errorf("vault init %s: the answer holds no unseal key or root token", addr)
	}
	if err := k.save(keys); err != nil {
		return Keys{}, err
	}
	if err := os.Remove(filepath.Join(k.Dir, AttemptFile)); err != nil {
		// The keys are safe; a stale attempt beside them is never read.
		k.Log.Warn("vault: removing the init attempt record", "err", err)
	}
	k.Log.Info("vault: initialised the lab's Vault; the unseal key and root token are in the gate's state", "vault", addr)
	return keys, nil
}

func (k *Keeper) load() (Keys, error) {
	b, err := os.ReadFile(filepath.Join(k.Dir, InitFile))
	if errors.Is(err, os.ErrNotExist) {
		return Keys{}, ErrNotInitialised
	}
	if err != nil {
		return Keys{}, fmt.Errorf("vault: %w", err)
	}
	var keys Keys
	if err := json.Unmarshal(b, &keys); err != nil || len(keys.Unseal) == 0 {
		return Keys{}, fmt.Errorf("vault: %s is damaged (restore it from a backup of the gate's state; kiln cannot make new keys for an initialised Vault)", filepath.Join(k.Dir, InitFile))
	}
	return keys, nil
}

// save writes the keys whole or not at all.
func (k *Keeper) save(keys Keys) error {
	data, err := json.Marshal(keys)
	if err != nil {
		return err
	}
	return k.writeFile(InitFile, data)
}

// writeFile replaces name in k.Dir whole or not at all (0600).
func (k *Keeper) writeFile(name string, data []byte) error {
	if err := state.WriteFileAtomic(filepath.Join(k.Dir, name), data, 0o600); err != nil {
		return fmt.Errorf("vault: %w", err)
	}
	return nil
}

// authed calls Vault with a token.
type authed struct {
	k     *Keeper
	token string
}

func (a authed) call(ctx context.Context, method, url string, in, out any) error {
	return a.k.send(ctx, CallTimeout, a.token, method, url, in, out)
}

// call sends one JSON request without a token, within CallTimeout.
func (k *Keeper) call(ctx context.Context, method, url string, in, out any) error {
	return k.send(ctx, CallTimeout, "", method, url, in, out)
}

// send sends one JSON request, with token as X-Vault-Token when not "",
// within timeout (0: ctx's own deadline only), and decodes the answer
// into out. Vault answers errors as {"errors": [...]}, which go into the
// error.
func (k *Keeper) send(ctx context.Context, timeout time.Duration, token, method, url string, in, out any) error {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("X-Vault-Token", token)
	}
	resp, err := k.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		e := &apiError{Status: resp.Status, Code: resp.StatusCode, Method: method}
		json.Unmarshal(raw, e)
		return e
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		return nil
	}
	return json.Unmarshal(raw, out)
}

// apiError is Vault's answer to a request it refused or failed, its
// {"errors": [...]} kept.
type apiError struct {
	Status string `json:"-"`
	Code   int    `json:"-"`
	Method string `json:"-"`
	Errors []string
}

func (e *apiError) Error() string { return fmt.Sprintf("%s: %s %v", e.Status, e.Method, e.Errors) }

// tornInit says whether err is Vault's seal status after a sys/init cut
// short (a power cut of its node in the middle of it, seen in the
// first-boot drill): its barrier initialised, its seal configuration not
// written, every seal-status a 500 for ever. Like a failed init it holds
// nothing anyone can unseal; the gate resets it when the attempt was its
// own (initialisedWithoutKeys).
func tornInit(err error) bool {
	var e *apiError
	return errors.As(err, &e) && e.Code == http.StatusInternalServerError &&
		slices.ContainsFunc(e.Errors, func(s string) bool { return strings.Contains(s, "no seal configuration found") })
}

// NewClient returns an HTTP client that trusts only the lab CA, as the
// Vaults' listeners present certificates it signed.
func NewClient(labCA *x509.CertPool) *http.Client {
	// No client-wide timeout: each request is bounded by its context
	// (CallTimeout, InitTimeout).
	return &http.Client{
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: labCA, MinVersion: tls.VersionTLS12}},
	}
}

// Addr is the API address of the Vault on the machine at address.
func Addr(address string) string {
	return "https://" + net.JoinHostPort(address, strconv.Itoa(Port))
}

// LeaderWait bounds how long the self-test waits for an unsealed Vault to
// know its cluster's active node: just unsealed, a Vault is neither
// active nor a standby until it has tried Consul's lock, and answers
// "active cluster node not found" meanwhile. It is short, as the machine
// that asked waits for the answer (and asks again when it failed).
const LeaderWait = 15 * time.Second

// waitLeader waits until the Vault at addr is active or knows which node
// is (sys/leader, which needs no token).
func (k *Keeper) waitLeader(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, LeaderWait)
	defer cancel()
	for {
		var l struct {
			IsSelf        bool   `json:"is_self"`
			LeaderAddress string `json:"leader_address"`
		}
		err := k.call(ctx, http.MethodGet, addr+"/v1/sys/leader", nil, &l)
		if err == nil && (l.IsSelf || l.LeaderAddress != "") {
			return nil
		}
		select {
		case <-ctx.Done():
			if err == nil {
				err = errors.New("no active node")
			}
			return fmt.Errorf("no active Vault after %s: %w", LeaderWait, err)
		case <-time.After(time.Second):
		}
	}
}

// SelftestMount is the KV (version 1) secrets engine the gate's self-test
// writes to: the lab's own, used by nothing else, so an operator may
// disable it.
const SelftestMount = "kiln-selftest"

// Selftest proves the lab's Vault stores and serves data through the
// Vault at addr, as the lab's node name: it writes the secret
// kiln-selftest/<name> through it and reads back, through it, every
// node's secret there (the others' written through their own Vaults, so a
// standby that forwards to the active node shows the cluster is one). It
// returns the names read. It needs the root token, which only the gate
// holds; nothing secret is written.
func (k *Keeper) Selftest(ctx context.Context, addr, name string) ([]string, error) {
	keys, err := k.load()
	if err != nil {
		return nil, err
	}
	if err := k.waitLeader(ctx, addr); err != nil {
		return nil, fmt.Errorf("vault self-test: %w", err)
	}
	c := authed{k, keys.RootToken}
	mount := map[string]any{"type": "kv", "options": map[string]string{"version": "1"}, "description": "kiln's self-test: one secret per storage node"}
	if err := c.call(ctx, http.MethodPost, addr+"/v1/sys/mounts/"+SelftestMount, mount, nil); err != nil && !strings.Contains(err.Error(), "path is already in use") {
		return nil, fmt.Errorf("vault self-test: mount %s: %w", SelftestMount, err)
	}
	path := addr + "/v1/" + SelftestMount + "/"
	if err := c.call(ctx, http.MethodPut, path+name, map[string]string{"written_through": name}, nil); err != nil {
		return nil, fmt.Errorf("vault self-test: write %s/%s: %w", SelftestMount, name, err)
	}
	var list struct {
		Data struct{ Keys []string } `json:"data"`
	}
	if err := c.call(ctx, "LIST", path, nil, &list); err != nil {
		return nil, fmt.Errorf("vault self-test: list %s: %w", SelftestMount, err)
	}
	var read []string
	for _, key := range list.Data.Keys {
		var got struct {
			Data map[string]string `json:"data"`
		}
		if err := c.call(ctx, http.MethodGet, path+key, nil, &got); err != nil {
			return read, fmt.Errorf("vault self-test: read %s/%s: %w", SelftestMount, key, err)
		}
		if got.Data["written_through"] != key {
			return read, fmt.Errorf("vault self-test: %s/%s reads %q", SelftestMount, key, got.Data)
		}
		read = append(read, key)
	}
	return read, nil
}
