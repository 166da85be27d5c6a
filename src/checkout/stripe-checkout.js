// paylink's hosted page for Stripe: Stripe Elements collects the card in
// Stripe's own frame, Stripe.js turns it into a PaymentMethod, and only its
// id (pm_...) is posted to paylink. Card data never reaches paylink.
(function () {
  'use strict';
  var form = document.getElementById('stripe-pay');
  if (form) {
    var stripe = Stripe(form.dataset.publishableKey);
    var card = stripe.elements().create('card');
    card.mount('#card-element');
    var errors = document.getElementById('card-errors');
    form.addEventListener('submit', function (event) {
      event.preventDefault();
      var button = form.querySelector('button');
      button.disabled = true;
      stripe.createPaymentMethod({ type: 'card', card: card }).then(function (result) {
        if (!result || result.error || !result.paymentMethod) {
          errors.textContent = (result && result.error && result.error.message) ||
            'Your card could not be read. Please check it and try again.';
          button.disabled = false;
          return;
        }
        form.elements.payment_method.value = result.paymentMethod.id;
        form.submit();
      });
    });
  }
  // 3-D Secure: Stripe.js shows the bank's challenge; whatever its result,
  // paylink asks Stripe what became of the payment.
  var action = document.getElementById('stripe-action');
  if (action) {
    var stripeAction = Stripe(action.dataset.publishableKey);
    stripeAction.confirmCardPayment(action.dataset.clientSecret).then(function () {
      action.submit();
    });
  }
})();
