// Card entry for the pay page and the saved-cards page. Stripe.js collects the card into a
// SetupIntent (card details never reach our servers); our server then charges or keeps that card.
(function () {
  "use strict";

  function show(box, text, isError) {
    box.textContent = text;
    box.className = isError ? "error" : "notice";
    box.hidden = !text;
  }

  async function post(form, url, body) {
    const response = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: {"Content-Type": "application/json", "Accept": "application/json",
                "X-CSRF-Token": form.dataset.csrf},
      body: JSON.stringify(body || {}),
    });
    const data = await response.json().catch(function () { return {}; });
    if (!response.ok && data.step_up_url) {
      window.location.assign(data.step_up_url);  // the business asks the contact to confirm it is them first
    }
    if (!response.ok) {
      throw new Error(data.detail || data.title || form.dataset.genericError);
    }
    return data;
  }

  function cardElement(form) {
    const stripe = Stripe(form.dataset.key);
    const card = stripe.elements().create("card");
    card.mount("#card-element");
    return {stripe: stripe, card: card};
  }

  // A new card: a fresh SetupIntent each time, so a declined card can be corrected and retried.
  async function setUpCard(form, stripe, card) {
    const setup = await post(form, form.dataset.setupUrl);
    const result = await stripe.confirmCardSetup(setup.client_secret, {payment_method: {card: card}});
    if (result.error) {
      throw new Error(result.error.message || form.dataset.declined);
    }
    return result.setupIntent.id;
  }

  const payForm = document.getElementById("pay-form");
  if (payForm) {
    const s = cardElement(payForm);
    const box = document.getElementById("pay-message");
    const button = payForm.querySelector("button[type=submit]");
    const newCard = document.getElementById("new-card");
    payForm.addEventListener("change", function () {
      const chosen = payForm.querySelector("input[name=card]:checked");
      newCard.hidden = !!chosen && chosen.value !== "new";
    });
    payForm.addEventListener("submit", async function (event) {
      event.preventDefault();
      button.disabled = true;
      show(box, payForm.dataset.working, false);
      try {
        const chosen = payForm.querySelector("input[name=card]:checked");
        let body;
        if (chosen && chosen.value !== "new") {
          body = {payment_method: chosen.value};
        } else {
          const save = payForm.querySelector("#save-card");
          body = {setup_intent: await setUpCard(payForm, s.stripe, s.card), save: !!(save && save.checked)};
        }
        let attempt = await post(payForm, payForm.dataset.confirmUrl, body);
        if (attempt.status === "requires_action") {  // the bank wants the client to confirm (3-D Secure)
          await s.stripe.confirmCardPayment(attempt.client_secret);
          attempt = await post(payForm, payForm.dataset.refreshUrl);
        }
        if (attempt.status === "failed") {
          throw new Error(attempt.failure_message || payForm.dataset.declined);
        }
        window.location.assign(attempt.next);
      } catch (error) {
        show(box, error.message, true);
        button.disabled = false;
      }
    });
  }

  const cardForm = document.getElementById("card-form");
  if (cardForm) {
    const s = cardElement(cardForm);
    const box = document.getElementById("card-message");
    const button = cardForm.querySelector("button[type=submit]");
    cardForm.addEventListener("submit", async function (event) {
      event.preventDefault();
      button.disabled = true;
      show(box, cardForm.dataset.working, false);
      try {
        const setupIntent = await setUpCard(cardForm, s.stripe, s.card);
        await post(cardForm, cardForm.dataset.saveUrl, {setup_intent: setupIntent});
        window.location.assign(cardForm.dataset.doneUrl);
      } catch (error) {
        show(box, error.message, true);
        button.disabled = false;
      }
    });
  }

  // The confirmation page: re-check until Stripe's event has been processed, then show the result.
  const status = document.getElementById("pay-status");
  if (status && status.dataset.pending === "true") {
    const check = async function () {
      try {
        const response = await fetch(status.dataset.statusUrl, {headers: {"Accept": "application/json"}});
        const data = await response.json();
        if (data.status !== status.dataset.status) {
          window.location.reload();
          return;
        }
      } catch (error) { /* a blip: try again */ }
      window.setTimeout(check, 1000);
    };
    window.setTimeout(check, 1000);
  }
})();
