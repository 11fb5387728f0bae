// Passkeys: the browser's WebAuthn calls for signing in, adding a passkey and confirming it is you
// (step-up). The server's options and the browser's answers travel as JSON with base64url bytes.
(function () {
  "use strict";

  function decode(text) {
    let s = text.replace(/-/g, "+").replace(/_/g, "/");
    while (s.length % 4) { s += "="; }
    return Uint8Array.from(atob(s), function (c) { return c.charCodeAt(0); }).buffer;
  }

  function encode(buffer) {
    let text = "";
    new Uint8Array(buffer).forEach(function (b) { text += String.fromCharCode(b); });
    return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function descriptors(list) {
    return (list || []).map(function (c) { return Object.assign({}, c, {id: decode(c.id)}); });
  }

  async function post(box, url, body) {
    const response = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: {"Content-Type": "application/json", "Accept": "application/json",
                "X-CSRF-Token": box.dataset.csrf},
      body: JSON.stringify(body || {}),
    });
    const data = await response.json().catch(function () { return {}; });
    if (!response.ok) {
      throw new Error(data.detail || data.title || box.dataset.genericError);
    }
    return data;
  }

  function answer(credential) {
    const r = credential.response;
    const response = {clientDataJSON: encode(r.clientDataJSON)};
    if (r.attestationObject) {
      response.attestationObject = encode(r.attestationObject);
      response.transports = r.getTransports ? r.getTransports() : [];
    } else {
      response.authenticatorData = encode(r.authenticatorData);
      response.signature = encode(r.signature);
      response.userHandle = r.userHandle ? encode(r.userHandle) : null;
    }
    return {id: credential.id, rawId: encode(credential.rawId), type: credential.type, response: response,
            clientExtensionResults: credential.getClientExtensionResults()};
  }

  async function create(box) {
    const options = await post(box, box.dataset.optionsUrl);
    options.challenge = decode(options.challenge);
    options.user.id = decode(options.user.id);
    options.excludeCredentials = descriptors(options.excludeCredentials);
    const credential = await navigator.credentials.create({publicKey: options});
    const name = box.querySelector("input[name=name]");
    return post(box, box.dataset.url, {credential: answer(credential), name: name ? name.value : ""});
  }

  async function get(box) {
    const options = await post(box, box.dataset.optionsUrl);
    options.challenge = decode(options.challenge);
    options.allowCredentials = descriptors(options.allowCredentials);
    const credential = await navigator.credentials.get({publicKey: options});
    return post(box, box.dataset.url, {credential: answer(credential), next: box.dataset.next || ""});
  }

  document.querySelectorAll("[data-passkey]").forEach(function (box) {
    const status = box.querySelector("[data-status]");
    if (!window.PublicKeyCredential) {
      return;  // stays hidden: this browser has no passkeys; the emailed link still works
    }
    box.hidden = false;
    box.addEventListener("submit", async function (event) {
      event.preventDefault();
      const button = box.querySelector("button");
      button.disabled = true;
      status.hidden = true;
      try {
        const done = await (box.dataset.passkey === "register" ? create(box) : get(box));
        window.location.assign(done.next || "/dashboard");
      } catch (error) {
        // a cancelled prompt is a DOMException: say so plainly, not the browser's wording
        status.textContent = error instanceof DOMException ? box.dataset.cancelled : error.message;
        status.hidden = false;
        button.disabled = false;
      }
    });
  });
})();
