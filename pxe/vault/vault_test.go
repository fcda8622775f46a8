package vault

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// fakeVault is the slice of Vault's API the keeper uses: one storage
// backend shared by every node (as Consul is), each node sealed on its own.
type fakeVault struct {
	mu          sync.Mutex
	initialized bool
	key         string
	sealed      map[string]bool // by node
	inits       int
	mounted     bool
	// electing is how many more times sys/leader answers with no
	// active node, as a Vault just unsealed does; meanwhile requests
	// that need the active node fail as Vault's do.
	electing int
	kv       map[string]string // kiln-selftest/<key>: written_through
	// initDelay is how long sys/init takes (Vault on Consul under TCG:
	// minutes).
	initDelay time.Duration
	// initStarted, when not nil, is told of each sys/init as it arrives;
	// initRelease, when not nil, holds every sys/init until it is closed
	// (a test orders events by them, not by sleeping).
	initStarted chan struct{}
	initRelease chan struct{}
	// failInits is how many more sys/init fail after initialising the
	// storage, as Vault's did when Consul lost its leader during its
	// post-unseal setup.
	failInits int
	// torn: a sys/init was cut short (its node lost power): the barrier
	// is initialised, the seal configuration missing, and seal-status
	// fails as Vault 1.13's does.
	torn bool
}

func (f *fakeVault) node(name string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/sys/seal-status", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.torn {
			http.Error(w, `{"errors":["core: barrier reports initialized but no seal configuration found"]}`, http.StatusInternalServerError)
			return
		}
		json.NewEncoder(w).Encode(f.statusOf(name))
	})
	mux.HandleFunc("PUT /v1/sys/init", func(w http.ResponseWriter, r *http.Request) {
		if f.initStarted != nil {
			select {
			case f.initStarted <- struct{}{}:
			default:
			}
		}
		if f.initRelease != nil {
			<-f.initRelease
		}
		time.Sleep(f.initDelay) // Vault goes on whether the client waits or not
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.initialized {
			http.Error(w, `{"errors":["Vault is already initialized"]}`, http.StatusBadRequest)
			return
		}
		var req struct{ SecretShares, SecretThreshold int }
		json.NewDecoder(r.Body).Decode(&req)
		if f.failInits > 0 {
			f.failInits--
			f.initialized, f.inits = true, f.inits+1
			http.Error(w, `{"errors":["list failed at path \"\": Unexpected response code: 500 (Raft leader not found in server lookup mapping)"]}`, http.StatusInternalServerError)
			return
		}
		f.initialized, f.key, f.inits = true, "dW5zZWFs", f.inits+1
		fmt.Fprintf(w, `{"keys":["75"],"keys_base64":[%q],"root_token":"hvs.root"}`, f.key)
	})
	mux.HandleFunc("PUT /v1/sys/unseal", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		var req struct{ Key string }
		json.NewDecoder(r.Body).Decode(&req)
		if !f.initialized {
			http.Error(w, `{"errors":["Vault is not initialized"]}`, http.StatusBadRequest)
			return
		}
		if req.Key == f.key {
			f.sealed[name] = false
		}
		json.NewEncoder(w).Encode(f.statusOf(name))
	})
	mux.HandleFunc("GET /v1/sys/leader", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		leader := "https://" + name + ":8200"
		if f.electing > 0 {
			f.electing--
			leader = ""
		}
		json.NewEncoder(w).Encode(map[string]any{"ha_enabled": true, "is_self": false, "leader_address": leader})
	})
	authed := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			f.mu.Lock()
			defer f.mu.Unlock()
			if r.Header.Get("X-Vault-Token") != "hvs.root" || f.sealed[name] {
				http.Error(w, `{"errors":["permission denied"]}`, http.StatusForbidden)
				return
			}
			if f.electing > 0 {
				http.Error(w, `{"errors":["local node not active but active cluster node not found"]}`, http.StatusInternalServerError)
				return
			}
			h(w, r)
		}
	}
	mux.HandleFunc("POST /v1/sys/mounts/kiln-selftest", authed(func(w http.ResponseWriter, r *http.Request) {
		if f.mounted {
			http.Error(w, `{"errors":["path is already in use at kiln-selftest/"]}`, http.StatusBadRequest)
			return
		}
		f.mounted = true
		w.WriteHeader(http.StatusNoContent)
	}))
	mux.HandleFunc("PUT /v1/kiln-selftest/{key}", authed(func(w http.ResponseWriter, r *http.Request) {
		var d map[string]string
		json.NewDecoder(r.Body).Decode(&d)
		if f.kv == nil {
			f.kv = map[string]string{}
		}
		f.kv[r.PathValue("key")] = d["written_through"]
		w.WriteHeader(http.StatusNoContent)
	}))
	mux.HandleFunc("LIST /v1/kiln-selftest/", authed(func(w http.ResponseWriter, r *http.Request) {
		keys := slices.Sorted(maps.Keys(f.kv))
		json.NewEncoder(w).Encode(map[string]any{"data": map[string]any{"keys": keys}})
	}))
	mux.HandleFunc("GET /v1/kiln-selftest/{key}", authed(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{"data": map[string]string{"written_through": f.kv[r.PathValue("key")]}})
	}))
	return mux
}

func (f *fakeVault) statusOf(name string) SealStatus {
	return SealStatus{Initialized: f.initialized, Sealed: f.sealed[name], Threshold: 1, Shares: 1, Version: "1.13.2"}
}

func startNodes(t *testing.T, f *fakeVault, names ...string) (map[string]string, *http.Client) {
	t.Helper()
	addrs := map[string]string{}
	var client *http.Client
	for _, n := range names {
		f.sealed[n] = true
		srv := httptest.NewTLSServer(f.node(n))
		t.Cleanup(srv.Close)
		addrs[n] = srv.URL
		client = srv.Client() // every httptest server shares one certificate
	}
	return addrs, client
}

func newKeeper(t *testing.T, client *http.Client) *Keeper {
	return &Keeper{Dir: filepath.Join(t.TempDir(), "vault"), HTTP: client, Log: slog.New(slog.DiscardHandler)}
}

// TestUnsealInitialisesOnce: the first node to ask makes the gate
// initialise Vault and keep the keys; every later node is unsealed with
// them, and no second init is ever sent.
func TestUnsealInitialisesOnce(t *testing.T) {
	f := &fakeVault{sealed: map[string]bool{}}
	addrs, client := startNodes(t, f, "ceph-1", "ceph-2", "ceph-3")
	k := newKeeper(t, client)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for _, n := range []string{"ceph-1", "ceph-2", "ceph-3"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := k.Unseal(ctx, addrs[n])
			if err == nil && st.Sealed {
				err = fmt.Errorf("%s still sealed", n)
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if f.inits != 1 {
		t.Errorf("vault initialised %d times, want once", f.inits)
	}
	fi, err := os.Stat(filepath.Join(k.Dir, InitFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %o, want 0600", InitFile, fi.Mode().Perm())
	}
	if d, _ := os.Stat(k.Dir); d.Mode().Perm() != 0o700 {
		t.Errorf("%s has mode %o, want 0700", k.Dir, d.Mode().Perm())
	}
	tok, err := k.RootToken()
	if err != nil || tok != "hvs.root" {
		t.Errorf("RootToken = %q, %v", tok, err)
	}

	// A reboot seals ceph-2 again: the gate unseals it, no init.
	f.sealed["ceph-2"] = true
	st, err := k.Unseal(ctx, addrs["ceph-2"])
	if err != nil || st.Sealed {
		t.Fatalf("after reboot: %+v, %v", st, err)
	}
	if f.inits != 1 {
		t.Errorf("vault initialised again after a reboot")
	}

	// Each node writes its secret through its own Vault and reads every
	// node's back; the first waits while the cluster has no active node
	// yet, as just after the first unseal.
	f.electing = 2
	var read []string
	for _, n := range []string{"ceph-1", "ceph-2", "ceph-3"} {
		if read, err = k.Selftest(ctx, addrs[n], n); err != nil {
			t.Fatalf("Selftest through %s: %v", n, err)
		}
	}
	if diff := cmp.Diff([]string{"ceph-1", "ceph-2", "ceph-3"}, read); diff != "" {
		t.Errorf("read through ceph-3 (-want +got):\n%s", diff)
	}
}

// TestInitialisedElsewhere: a Vault initialised without the gate's keys is
// refused with the sentinel, never re-initialised.
func TestInitialisedElsewhere(t *testing.T) {
	f := &fakeVault{sealed: map[string]bool{}, initialized: true, key: "other"}
	addrs, client := startNodes(t, f, "ceph-1")
	k := newKeeper(t, client)
	_, err := k.Unseal(context.Background(), addrs["ceph-1"])
	if !errors.Is(err, ErrInitialisedElsewhere) {
		t.Fatalf("Unseal = %v, want ErrInitialisedElsewhere", err)
	}
	if _, err := k.RootToken(); !errors.Is(err, ErrNotInitialised) {
		t.Errorf("RootToken = %v, want ErrNotInitialised", err)
	}
}

// TestDamagedKeys: a torn or emptied init file is refused, not replaced.
func TestDamagedKeys(t *testing.T) {
	f := &fakeVault{sealed: map[string]bool{}, initialized: true, key: "k"}
	addrs, client := startNodes(t, f, "ceph-1")
	k := newKeeper(t, client)
	os.MkdirAll(k.Dir, 0o700)
	os.WriteFile(filepath.Join(k.Dir, InitFile), []byte(`{"keys_base64":[`), 0o600)
	_, err := k.Unseal(context.Background(), addrs["ceph-1"])
	if err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("Unseal = %v, want a damaged-file error", err)
	}
	if f.inits != 0 {
		t.Errorf("a damaged key file led to a second init")
	}
}

// TestKeysRedacted: neither fmt nor slog shows a key.
func TestKeysRedacted(t *testing.T) {
	keys := Keys{Unseal: []string{"c2VjcmV0"}, RootToken: "hvs.secret"}
	var b strings.Builder
	log := slog.New(slog.NewTextHandler(&b, nil))
	log.Info("x", "keys", keys)
	for _, s := range []string{fmt.Sprint(keys), fmt.Sprintf("%+v %#v %s %q", keys, keys, keys, keys), b.String()} {
		if strings.Contains(s, "c2VjcmV0") || strings.Contains(s, "hvs.secret") {
			t.Errorf("secret in output: %s", s)
		}
	}
	if diff := cmp.Diff("vault.Keys[secret]", fmt.Sprint(keys)); diff != "" {
		t.Error(diff)
	}
}

// TestInitOutlivesTheAsker: the node that made the gate initialise Vault
// goes away before Vault answers (its request timed out). The gate still
// takes the answer, keeps the keys and unseals that Vault; a second node
// asking meanwhile waits no longer than its own request, then is told to
// come back. The fake holds the init until the test lets it go: ordered
// by events, not by sleeps, so a loaded machine cannot reorder them.
func TestInitOutlivesTheAsker(t *testing.T) {
	f := &fakeVault{sealed: map[string]bool{}, initStarted: make(chan struct{}, 1), initRelease: make(chan struct{})}
	addrs, client := startNodes(t, f, "ceph-1", "ceph-2")
	k := newKeeper(t, client)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := k.Unseal(ctx, addrs["ceph-1"])
		done <- err
	}()
	select {
	case <-f.initStarted:
	case <-time.After(30 * time.Second):
		close(f.initRelease)
		t.Fatal("ceph-1's unseal never asked Vault to initialise")
	}
	cancel() // ceph-1's asker has gone, its init held under way
	other, cancel2 := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel2()
	if _, err := k.Unseal(other, addrs["ceph-2"]); err == nil || !strings.Contains(err.Error(), "waiting for the unseal under way") {
		t.Errorf("ceph-2 during the init: %v, want to be told to come back", err)
	}
	close(f.initRelease)
	if err := <-done; err != nil {
		t.Errorf("ceph-1's unseal, its asker gone: %v", err)
	}
	tok, err := k.RootToken()
	if err != nil || tok != "hvs.root" {
		t.Errorf("root token after the init = %q, %v: the keys were lost", tok, err)
	}
	if f.inits != 1 || f.statusOf("ceph-1").Sealed {
		t.Errorf("inits %d, ceph-1 %+v; want one init and ceph-1 unsealed", f.inits, f.statusOf("ceph-1"))
	}
	if st, err := k.Unseal(context.Background(), addrs["ceph-2"]); err != nil || st.Sealed {
		t.Errorf("ceph-2 asking again: %+v, %v", st, err)
	}
}

// TestFailedInitResets: sys/init fails after Vault initialised its
// storage. The gate, which recorded its attempt before sending it, has
// the node it asked wipe the storage and the others restart their Vault;
// once the storage is blank it initialises again, keeps the keys, and
// from then on unseals every node and never asks for a reset again.
func TestFailedInitResets(t *testing.T) {
	f := &fakeVault{sealed: map[string]bool{}, failInits: 1}
	addrs, client := startNodes(t, f, "ceph-1", "ceph-2")
	k := newKeeper(t, client)
	ctx := context.Background()

	if _, err := k.Unseal(ctx, addrs["ceph-1"]); err == nil || !strings.Contains(err.Error(), "Raft leader not found") {
		t.Fatalf("first unseal: %v, want the failed init", err)
	}
	if _, err := os.Stat(filepath.Join(k.Dir, AttemptFile)); err != nil {
		t.Fatalf("no record of the attempt: %v", err)
	}
	if _, err := k.Unseal(ctx, addrs["ceph-2"]); !errors.Is(err, ErrResetPending) {
		t.Errorf("another node: %v, want ErrResetPending", err)
	}
	if _, err := k.Unseal(ctx, addrs["ceph-1"]); !errors.Is(err, ErrResetStorage) {
		t.Fatalf("the node asked: %v, want ErrResetStorage", err)
	}
	// The node wipes Vault's storage prefix and restarts its Vault.
	f.mu.Lock()
	f.initialized = false
	f.mu.Unlock()
	if st, err := k.Unseal(ctx, addrs["ceph-1"]); err != nil || st.Sealed {
		t.Fatalf("after the reset: %+v, %v", st, err)
	}
	if _, err := os.Stat(filepath.Join(k.Dir, AttemptFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the attempt record outlives the keys: %v", err)
	}
	if st, err := k.Unseal(ctx, addrs["ceph-2"]); err != nil || st.Sealed {
		t.Errorf("the other node: %+v, %v", st, err)
	}
	if f.inits != 2 {
		t.Errorf("%d inits, want 2", f.inits)
	}
	// Keys held: a sealed, initialised Vault is unsealed, never reset.
	f.mu.Lock()
	f.sealed["ceph-1"] = true
	f.mu.Unlock()
	if st, err := k.Unseal(ctx, addrs["ceph-1"]); err != nil || st.Sealed {
		t.Errorf("after a reboot: %+v, %v", st, err)
	}
}

// TestTornInitResets: the node whose Vault the gate was initialising lost
// its power in the middle of sys/init; its Vault answers every seal
// status with a 500 for ever. The gate, holding no keys and its own
// attempt on record for that Vault, has it reset, as after a failed init.
func TestTornInitResets(t *testing.T) {
	f := &fakeVault{sealed: map[string]bool{}}
	addrs, client := startNodes(t, f, "ceph-1", "ceph-2")
	k := newKeeper(t, client)
	ctx := context.Background()
	f.torn, f.initialized = true, true

	// No attempt of the gate's on record: not its to reset.
	if _, err := k.Unseal(ctx, addrs["ceph-1"]); !errors.Is(err, ErrInitialisedElsewhere) {
		t.Fatalf("torn, no attempt on record: %v, want ErrInitialisedElsewhere", err)
	}
	a, _ := json.Marshal(attempt{Vault: addrs["ceph-1"], At: time.Now()})
	if err := os.MkdirAll(k.Dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := k.writeFile(AttemptFile, a); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Unseal(ctx, addrs["ceph-2"]); !errors.Is(err, ErrResetPending) {
		t.Errorf("another node: %v, want ErrResetPending", err)
	}
	if _, err := k.Unseal(ctx, addrs["ceph-1"]); !errors.Is(err, ErrResetStorage) {
		t.Fatalf("the node cut during init: %v, want ErrResetStorage", err)
	}
	// The node wipes Vault's storage prefix and restarts its Vault.
	f.mu.Lock()
	f.torn, f.initialized = false, false
	f.mu.Unlock()
	if st, err := k.Unseal(ctx, addrs["ceph-1"]); err != nil || st.Sealed {
		t.Fatalf("after the reset: %+v, %v", st, err)
	}
	// Keys held: a 500 is an error, never a reset.
	f.mu.Lock()
	f.torn = true
	f.mu.Unlock()
	if _, err := k.Unseal(ctx, addrs["ceph-1"]); err == nil || errors.Is(err, ErrResetStorage) {
		t.Errorf("keys held, seal status failing: %v, want a plain error", err)
	}
}
