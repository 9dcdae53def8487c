// Command argocd-health runs an Argo CD resource health check (Lua) the way Argo CD runs one
// from argocd-cm (`resource.customizations.health.<group>_<kind>`), for tests only:
//
//	argocd-health SCRIPT.lua < objects.json
//
// stdin holds a JSON array of objects; stdout gets one JSON line per object, in order: {"status":…,"message":…} and, when the script failed, "error".
//
// What Argo CD does, and this does too (argo-cd util/lua/lua.go and gitops-engine's
// health.GetResourceHealth):
//   - an object with metadata.deletionTimestamp is Progressing "Pending deletion" without
//     running the script;
//   - the interpreter is gopher-lua with the standard libraries skipped (useOpenLibs is off
//     for argocd-cm scripts unless asked): only the package, base and table libraries are
//     opened, so string.*, math.*, os.* and method calls on strings are not there. (Argo CD
//     also lets require("os") return a module with only time and date; our scripts do not
//     use it, so it is left out here and a script that needs it fails.)
//   - the object is the global `obj`, its integers are Lua numbers, as from Argo CD's cache;
//   - the run is cancelled after 1 s;
//   - the script must return a table; it goes through layeh.com/gopher-json into
//     {status, message}; a status outside Healthy, Progressing, Degraded, Suspended, Missing,
//     Unknown becomes Unknown "Lua returned an invalid health status";
//   - a failing script makes the health Unknown with the error as its message.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	lua "github.com/yuin/gopher-lua"
	luajson "layeh.com/gopher-json"
)

// Verdict is one output line.
type Verdict struct {
	Status  string `json:"status"`
	Message string `json:"message"`
	Error   string `json:"error,omitempty"`
}

var validStatus = map[string]bool{
	"Healthy": true, "Progressing": true, "Degraded": true,
	"Suspended": true, "Missing": true, "Unknown": true,
}

// Timeout is Argo CD's limit on one script run.
const Timeout = 1 * time.Second

// health judges one object as Argo CD's controller does.
func health(script string, obj map[string]any) Verdict {
	if meta, ok := obj["metadata"].(map[string]any); ok && meta["deletionTimestamp"] != nil {
		return Verdict{Status: "Progressing", Message: "Pending deletion"}
	}
	v, err := runHealth(script, obj)
	if err != nil {
		return Verdict{Status: "Unknown", Message: err.Error(), Error: err.Error()}
	}
	return v
}

func runHealth(script string, obj map[string]any) (Verdict, error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			return Verdict{}, fmt.Errorf("opening %s: %w", lib.name, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", toLua(l, obj))
	if err := l.DoString(script); err != nil {
		return Verdict{}, err
	}
	ret := l.Get(-1)
	if ret.Type() != lua.LTTable {
		return Verdict{}, fmt.Errorf("expect table output from Lua script, not %s", ret.Type().String())
	}
	data, err := luajson.Encode(ret)
	if err != nil {
		return Verdict{}, err
	}
	var hs struct {
		Status  string `json:"status"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal(data, &hs); err != nil {
		return Verdict{}, err
	}
	if !validStatus[hs.Status] {
		return Verdict{Status: "Unknown", Message: "Lua returned an invalid health status"}, nil
	}
	return Verdict{Status: hs.Status, Message: hs.Message}, nil
}

// toLua converts decoded JSON into Lua values as Argo CD converts an unstructured object:
// maps become hash tables, arrays sequences, numbers Lua numbers, null nil.
func toLua(l *lua.LState, value any) lua.LValue {
	switch v := value.(type) {
	case bool:
		return lua.LBool(v)
	case string:
		return lua.LString(v)
	case json.Number:
		// The API server's integers arrive as int64 in Argo CD's cache, others as float64.
		if i, err := v.Int64(); err == nil {
			return lua.LNumber(i)
		}
		f, _ := v.Float64()
		return lua.LNumber(f)
	case []any:
		t := l.CreateTable(len(v), 0)
		for _, item := range v {
			t.Append(toLua(l, item))
		}
		return t
	case map[string]any:
		t := l.CreateTable(0, len(v))
		for key, item := range v {
			t.RawSetH(lua.LString(key), toLua(l, item))
		}
		return t
	}
	return lua.LNil
}

// objects reads the JSON array on stdin, numbers kept as written.
func objects(data []byte) ([]map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var objs []map[string]any
	if err := dec.Decode(&objs); err != nil {
		return nil, fmt.Errorf("stdin is not a JSON array of objects: %w", err)
	}
	return objs, nil
}

func run() error {
	if len(os.Args) != 2 {
		return errors.New("usage: argocd-health SCRIPT.lua < objects.json")
	}
	script, err := os.ReadFile(os.Args[1])
	if err != nil {
		return err
	}
	data, err := io.ReadAll(os.Stdin)
	if err != nil {
		return err
	}
	objs, err := objects(data)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(os.Stdout)
	enc := json.NewEncoder(w)
	for _, o := range objs {
		if err := enc.Encode(health(string(script), o)); err != nil {
			return err
		}
	}
	return w.Flush()
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "argocd-health:", err)
		os.Exit(1)
	}
}
