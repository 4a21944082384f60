package signalr2

import (
	"encoding/json"
	"net/http"
	"regexp"
	"slices"
	"strings"

	"github.com/backplane/backplane/transport/signalr"
)

// The generated proxy script (/signalr/hubs, /signalr/js). ASP.NET
// SignalR 2 generates it from the server's hub classes; a Backplane hub
// has no class, only the relay methods, and any valid name is a hub. So
// the script:
//
//   - gives every hub proxy server methods for the relay methods
//     (server.joinGroup(group), server.sendToGroup(group, target, ...args),
//     …) and a client object whose functions are subscribed at start, as
//     the generated proxies do;
//   - adds, when the node's Application knows its methods ahead of time
//     (it implements signalr.MethodLister: Go hubs), each of its hubs'
//     methods to that hub's proxy (server.<method>(...args), named as
//     ASP.NET names them: the first letter in lower case), and creates
//     those hubs' proxies up front;
//   - creates the proxies of the hubs named with ?hub=<name> (repeatable)
//     up front, and any other $.connection.<name> on first use, so a page
//     written for a generated proxy works without naming its hubs.

// proxyHubName is a name a page may use for a hub proxy.
var proxyHubName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]{0,127}$`)

// lowerFirst is name with its first letter in lower case, as the
// generated proxies name hubs and methods.
func lowerFirst(name string) string {
	if name == "" {
		return name
	}
	return strings.ToLower(name[:1]) + name[1:]
}

func (s *Server) serveProxy(w http.ResponseWriter, r *http.Request, base string) {
	var hubs []string
	for _, h := range r.URL.Query()["hub"] {
		for _, name := range strings.Split(h, ",") {
			if name = strings.TrimSpace(name); proxyHubName.MatchString(name) {
				hubs = append(hubs, name)
			}
		}
	}
	appMethods := map[string][]string{}
	if lister, ok := s.opts.Application.(signalr.MethodLister); ok {
		for _, hub := range lister.Hubs() {
			if !proxyHubName.MatchString(hub) {
				continue
			}
			var methods []string
			for _, m := range lister.Methods(hub) {
				if proxyHubName.MatchString(m) {
					methods = append(methods, m)
				}
			}
			key := strings.ToLower(hub)
			appMethods[key] = append(appMethods[key], methods...)
			if name := lowerFirst(hub); !slices.ContainsFunc(hubs, func(h string) bool { return strings.EqualFold(h, name) }) {
				hubs = append(hubs, name)
			}
		}
	}
	names, _ := json.Marshal(hubs) // strings: cannot fail; escapes <, > and &
	if hubs == nil {
		names = []byte("[]")
	}
	methods, _ := json.Marshal(relayMethodNames)
	apps, _ := json.Marshal(appMethods)
	url, _ := json.Marshal(base)
	script := strings.NewReplacer("__HUBS__", string(names), "__METHODS__", string(methods), "__APPMETHODS__", string(apps), "__URL__", string(url)).Replace(proxyScript)
	h := w.Header()
	h.Set("Content-Type", "application/javascript; charset=UTF-8")
	h.Set("Cache-Control", "no-cache")
	_, _ = w.Write([]byte(script))
}

const proxyScript = `/* Backplane: hub proxies for the ASP.NET SignalR 2 JavaScript client. */
(function ($, window) {
    "use strict";
    if (!$ || typeof $.signalR !== "function") {
        throw new Error("Backplane: load jquery.signalR before /signalr/hubs.");
    }
    var signalR = $.signalR,
        hubNames = __HUBS__,
        relayMethods = __METHODS__,
        appMethods = __APPMETHODS__,
        validName = /^[A-Za-z][A-Za-z0-9_]{0,127}$/;

    function lowerFirst(s) { return s.charAt(0).toLowerCase() + s.slice(1); }

    // subscribe turns the functions in each proxy's client object into
    // handlers (on start), or removes them again (on disconnect).
    function subscribe(proxies, on) {
        $.each(proxies, function (name, proxy) {
            $.each(proxy.client, function (method, fn) {
                if (!$.isFunction(fn)) { return; }
                if (on) {
                    proxy.on(method, function () { fn.apply(proxy, $.makeArray(arguments)); }, fn);
                } else {
                    proxy.off(method, undefined, fn);
                }
            });
        });
    }

    function makeProxy(connection, proxies, name) {
        var proxy = connection.createHubProxy(name);
        proxy.client = proxy.client || {};
        proxy.server = proxy.server || {};
        $.each(relayMethods.concat(appMethods[name.toLowerCase()] || []), function (i, method) {
            proxy.server[lowerFirst(method)] = function () {
                return proxy.invoke.apply(proxy, [method].concat($.makeArray(arguments)));
            };
        });
        proxies[name] = proxy;
        return proxy;
    }

    $.hubConnection.prototype.createHubProxies = function () {
        var proxies = {}, connection = this;
        this.starting(function () {
            subscribe(proxies, true);
            this._registerSubscribedHubs();
        }).disconnected(function () {
            subscribe(proxies, false);
        });
        $.each(hubNames, function (i, name) { makeProxy(connection, proxies, name); });
        this._backplaneProxies = proxies;
        return proxies;
    };

    signalR.hub = $.hubConnection(__URL__, { useDefaultPath: false });
    $.extend(signalR, signalR.hub.createHubProxies());

    if (typeof window.Proxy === "function" && typeof window.Reflect === "object") {
        // $.connection.<any hub> creates its proxy on first use.
        $.connection = $.signalR = new window.Proxy(signalR, {
            get: function (target, prop, receiver) {
                if (typeof prop === "string" && !(prop in target) && validName.test(prop)) {
                    target[prop] = makeProxy(target.hub, target.hub._backplaneProxies, prop);
                }
                return window.Reflect.get(target, prop, receiver);
            }
        });
    }
}(window.jQuery, window));
`
