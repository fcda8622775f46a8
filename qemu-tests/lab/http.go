package lab

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"
)

// httpTimeout bounds a Get: connecting and reading the whole answer.
const httpTimeout = 30 * time.Second

// Get fetches rawURL (http only) from inside the lab's namespace, as a
// machine on the LAN would: e.g. a gate VM's /status.json. The connection
// is dialled inside Do (net/http would dial from its own goroutine,
// outside the namespace). Any status but 200 is an error.
func (n *Network) Get(rawURL string) ([]byte, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "http" || u.Port() == "" {
		return nil, fmt.Errorf("lab: get %s: want http://host:port/...", rawURL)
	}
	var body []byte
	err = n.Do(func() error {
		c, err := net.DialTimeout("tcp", u.Host, httpTimeout)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(httpTimeout))
		req, err := http.NewRequest("GET", rawURL, nil)
		if err != nil {
			return err
		}
		if err := req.Write(c); err != nil {
			return err
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s", resp.Status)
		}
		body, err = io.ReadAll(resp.Body)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("lab: get %s: %w", rawURL, err)
	}
	return body, nil
}
