// Zelta's `cancelPaymentLink` and `safeCancelPaymentLink` from its seed
// (001_47d5bb42b7381973.txt), unchanged but for the base URL. The harness
// at the end calls them with a real key and hash URLs.

async function cancelPaymentLink(apiKey, hashUrl) {
  try {
    const response = await fetch(`${process.env.PAYLINK_BASE}/compat/zelta/v1/payment-links/${hashUrl}/cancel`, {
      method: 'PATCH',
      headers: {
        'X-API-Key': apiKey,
        'Content-Type': 'application/json'
      }
    });

    const result = await response.json();

    if (!response.ok) {
      throw new Error(result.message);
    }

    return result.data.paymentLink;
  } catch (error) {
    console.error('Error cancelling payment link:', error);
    throw error;
  }
}

async function safeCancelPaymentLink(apiKey, hashUrl) {
  try {
    // First, check the current status
    const getResponse = await fetch(`${process.env.PAYLINK_BASE}/compat/zelta/v1/payment-links/${hashUrl}`, {
      headers: {
        'X-API-Key': apiKey,
        'Content-Type': 'application/json'
      }
    });

    const getResult = await getResponse.json();

    if (!getResponse.ok) {
      throw new Error(getResult.message);
    }

    const paymentLink = getResult.data.paymentLink;

    // Check if cancellation is allowed
    if (paymentLink.status === 'completed') {
      throw new Error('Cannot cancel completed payment link');
    }

    if (paymentLink.status === 'cancelled') {
      console.log('Payment link is already cancelled');
      return paymentLink;
    }

    // Proceed with cancellation
    return await cancelPaymentLink(apiKey, hashUrl);
  } catch (error) {
    console.error('Error in safe cancellation:', error);
    throw error;
  }
}

const apiKey = process.env.ZELTA_API_KEY;
const [first, second, paid] = process.env.HASH_URLS.split(',');

// Usage
const cancelledLink = await cancelPaymentLink(apiKey, first);
console.log('Payment link cancelled:', cancelledLink.id);
const result = await safeCancelPaymentLink(apiKey, second);
console.log('Cancellation result:', result.id);
const again = await safeCancelPaymentLink(apiKey, first);

let refusedCompleted = null;
try {
  await safeCancelPaymentLink(apiKey, paid);
} catch (error) {
  refusedCompleted = error.message;
}
let refusedTwice = null;
try {
  await cancelPaymentLink(apiKey, first);
} catch (error) {
  refusedTwice = error.message;
}
let notFound = null;
try {
  await cancelPaymentLink(apiKey, 'abc123');
} catch (error) {
  notFound = error.message;
}
console.log(JSON.stringify({ cancelledLink, result, again, refusedCompleted, refusedTwice, notFound }));
